"""The sample layout of the plugin's tasks: right-padded tokens in ``net_input`` and a
right-padded target per item, in the keys fairseq's criteria and ``Trainer`` read
(``id``, ``nsentences``, ``ntokens``); packed blocks add their ``segment_ids``."""
from typing import Dict, Optional

from fairseq.data import (
    FairseqDataset,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RightPadDataset,
)


def token_target_dataset(
    tokens: FairseqDataset,
    token_pad: int,
    targets: FairseqDataset,
    target_pad: int,
    extra: Optional[Dict[str, FairseqDataset]] = None,
    segment_ids: Optional[FairseqDataset] = None,
) -> NestedDictionaryDataset:
    """``tokens`` padded with ``token_pad`` (B x T) and ``targets`` with ``target_pad``:
    per token (masked LM, NER: B x T) or per item (QA's start and end, B x 2). ``extra``
    adds sample keys the criterion reads and the model never sees. ``segment_ids`` (packed
    blocks: 1..k per token) go to the model padded with 0, the model's sign of padding."""
    net_input = {
        "src_tokens": RightPadDataset(tokens, pad_idx=token_pad),
        "src_lengths": NumelDataset(tokens, reduce=False),
    }
    if segment_ids is not None:
        net_input["segment_ids"] = RightPadDataset(segment_ids, pad_idx=0)
    return NestedDictionaryDataset(
        {
            "id": IdDataset(),
            "net_input": net_input,
            "target": RightPadDataset(targets, pad_idx=target_pad),
            "nsentences": NumSamplesDataset(),
            "ntokens": NumelDataset(tokens, reduce=True),
            **(extra or {}),
        },
        sizes=[tokens.sizes],
    )
