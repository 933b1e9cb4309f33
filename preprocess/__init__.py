"""Data preparation for XLM-R pretraining: CC-100 style text -> SentencePiece
vocabulary -> fairseq's binarized per-language shards (`xlmr-prepare`)."""
