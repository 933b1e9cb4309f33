"""SLURM launchers built on submitit: binarization arrays for `xlmr-prepare --executor slurm`,
`xlmr-train` (fairseq-train over N nodes x G GPUs, requeued on preemption) and `xlmr-sweep`."""
