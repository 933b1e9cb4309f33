"""Downstream evaluation of XLM-R (XNLI, NER, MLQA): readers of the official data
formats and the official metrics, shared by the fine-tuning tasks and commands."""
