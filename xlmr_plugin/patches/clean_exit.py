"""Stop fairseq's batch-prefetching thread before the interpreter shuts down.

fairseq-train prefetches batches in a daemon thread (``--data-buffer-size``, 10 by
default). When training stops mid-epoch (``--max-update``), that thread is often still
collating the next batch inside torch's C++ code while Python finalizes, and the process
then dies with "terminate called without an active exception" (exit 134) after a run
that saved its checkpoints: resubmission scripts and ``make`` take it for a failure.
At exit we let each prefetcher finish the batch in hand and return.
"""
import atexit
import queue
import threading

from fairseq.data.iterators import BackgroundConsumer


def stop_prefetch_threads(timeout_s: float = 10.0) -> None:
    for thread in threading.enumerate():
        if not isinstance(thread, BackgroundConsumer):
            continue
        thread._max_len = 0  # break after the item in hand, then put the end marker
        # drain, so that neither that item nor the marker blocks on a full queue
        waited = 0.0
        while thread.is_alive() and waited < timeout_s:
            try:
                thread._queue.get(timeout=0.05)
            except queue.Empty:
                waited += 0.05
        thread.join(timeout=1.0)


def install() -> None:
    atexit.register(stop_prefetch_threads)
