"""``XLMR``: question a trained model from Python, on CPU or GPU.

fairseq's ``RobertaHubInterface`` with what XLM-R users need on top: loading from a
training run or an official release directory into the plugin's architectures,
``<mask>``-aware encoding identical to the Hugging Face tokenizer, fill-mask with
several masks and correct spaces, and batched features and sentence embeddings.

    >>> xlmr = XLMR.from_pretrained("checkpoints", "checkpoint_best.pt", data_dir="DEST")
    >>> xlmr.fill_mask("Paris is the <mask> of France.", topk=3)[0].text
"""
import logging
import math
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from fairseq import checkpoint_utils
from fairseq.data import data_utils
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models.roberta import RobertaHubInterface
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from omegaconf import open_dict

from xlmr_plugin.evaluation.pooling import mean_over_tokens
from xlmr_plugin.interop.release_import import use_plugin_architecture
from xlmr_plugin.probing.fill_mask_generator import FillMaskGenerator
from xlmr_plugin.probing.masked_text import encode_masked, fill_text, filler_surface
from xlmr_plugin.storage import layout

logger = logging.getLogger(__name__)

Texts = Union[str, Sequence[str]]


class Filled(NamedTuple):
    """One way to fill a line's masks: the k-th best filler at every mask."""

    text: str  # the line with its masks filled
    score: float  # probability of these fillers together (product over the masks)
    fillers: Tuple[str, ...]  # per mask, the filler's text; a leading space marks a word start
    probs: Tuple[float, ...]  # per mask, the filler's probability


class XLMR(RobertaHubInterface):
    """A loaded model with its dictionary (``task``) and SentencePiece model (``bpe``)."""

    @classmethod
    def from_pretrained(
        cls,
        model_dir: Union[str, Path],
        checkpoint_file: str = layout.RELEASE_MODEL,
        data_dir: Optional[Union[str, Path]] = None,
        sentencepiece_model: Optional[Union[str, Path]] = None,
    ) -> "XLMR":
        """Load ``model_dir/checkpoint_file`` in eval mode, on CPU (``.cuda()`` moves it).

        ``data_dir`` holds ``dict.txt``: by default ``model_dir`` if it has one (release
        layout), else the training data folder recorded in the checkpoint. The
        SentencePiece model is ``sentencepiece.bpe.model`` or ``spm.model`` from
        ``model_dir`` or ``data_dir``. Inference needs only the dictionary, so the task is
        fairseq's ``masked_lm`` (``xlmr_mlm`` would want the training shards too); it
        appends ``<mask>`` exactly as ``xlmr_mlm`` does. fairseq's ``hub_utils.from_pretrained``
        is not used because it cannot rewrite a release checkpoint's architecture.
        """
        model_dir = Path(model_dir)
        path = str(model_dir / checkpoint_file)
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        if state.get("args") is not None:  # argparse-era checkpoints, as the XLM-R release
            state["cfg"] = convert_namespace_to_omegaconf(state["args"])
            state["args"] = None  # else fairseq would rebuild cfg from args, undoing the next line
        use_plugin_architecture(state["cfg"])
        data = Path(data_dir) if data_dir else layout.dictionary_dir(model_dir, state["cfg"].task)
        spm = (Path(sentencepiece_model) if sentencepiece_model
               else layout.find_spm(model_dir, data, names=layout.RELEASE_SPM_NAMES))
        task = MaskedLMTask.setup_task(MaskedLMConfig(data=str(data)))
        [model], cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], task=task, state=state)
        with open_dict(cfg):
            cfg.bpe = {"_name": "sentencepiece", "sentencepiece_model": str(spm)}
        logger.info("loaded %s (%s) with %s and %s", path, cfg.model.arch, data / layout.DICT, spm)
        return cls(cfg, task, model).eval()

    def encode(self, sentence: str, *addl_sentences: str, no_separator: bool = False) -> torch.LongTensor:
        """``<s> a </s>`` (``</s> b </s>`` per further sentence), ``<mask>`` as the mask id.

        The ids equal the Hugging Face ``XLMRobertaTokenizer``'s for the same text.
        """
        parts = [torch.tensor([self.task.source_dictionary.bos()]), self.encode_line(sentence)]
        for other in addl_sentences:
            if not no_separator:
                parts.append(torch.tensor([self.task.source_dictionary.eos()]))
            parts.append(self.encode_line(other))
        return torch.cat(parts).long()

    def encode_batch(self, texts: Sequence[str]) -> torch.LongTensor:
        """B x T ids of ``texts``, right-padded with ``<pad>``."""
        return data_utils.collate_tokens([self.encode(t) for t in texts], self.task.source_dictionary.pad())

    def fill_mask(self, masked_input: Texts, topk: int = 5) -> Union[List[Filled], List[List[Filled]]]:
        """The ``topk`` best fillings of a line with one or more ``<mask>``, best first.

        A list of lines is run as one batch and gives one list per line.
        """
        texts = [masked_input] if isinstance(masked_input, str) else list(masked_input)
        for text in texts:
            if "<mask>" not in text:
                raise ValueError(f"no <mask> in {text!r}: add one where a word should be predicted")
        generator = FillMaskGenerator(self.task.source_dictionary, self.task.mask_idx, nbest=topk)
        src_tokens = self.encode_batch(texts).to(self.device)
        hypos = generator.generate([self.model], {"net_input": {"src_tokens": src_tokens}})
        results = [[self._filled(text, hypo) for hypo in line] for text, line in zip(texts, hypos)]
        return results[0] if isinstance(masked_input, str) else results

    def extract_features(
        self, tokens: Union[torch.Tensor, Texts], return_all_hiddens: bool = False, layer: Optional[int] = None
    ) -> Union[torch.Tensor, List[torch.Tensor]]:
        """B x T x C features of ids or texts (texts are padded into one batch).

        ``layer=None`` gives the model's output features; ``layer=i`` the hidden state
        after ``i`` layers (0: embeddings, -1: the last layer, before a pre-norm model's
        final LayerNorm), as Hugging Face's ``hidden_states[i]``.
        """
        if isinstance(tokens, str):
            tokens = self.encode(tokens)
        elif not torch.is_tensor(tokens):
            tokens = self.encode_batch(tokens)
        if layer is None:
            return super().extract_features(tokens, return_all_hiddens=return_all_hiddens)
        with torch.no_grad():
            return super().extract_features(tokens, return_all_hiddens=True)[layer]

    def sentence_embeddings(self, texts: Texts, layer: Optional[int] = None, batch_size: int = 32) -> torch.Tensor:
        """N x C: each text's features averaged over its tokens, ``<s>`` and ``</s>`` included.

        Batches of ``batch_size``; padding is left out of the mean, so a text's
        embedding does not depend on what it is batched with.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        pad = self.task.source_dictionary.pad()
        pooled = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = self.encode_batch(texts[start : start + batch_size]).to(self.device)
                pooled.append(mean_over_tokens(self.extract_features(tokens, layer=layer), tokens, pad))
        return torch.cat(pooled)

    def encode_line(self, text: str) -> torch.LongTensor:
        """Ids of one text ending in ``</s>``, without ``<s>``: a line as xlmr-prepare binarizes it."""
        return encode_masked(text, self.bpe.encode, self.task.source_dictionary)

    def _filled(self, text: str, hypo: dict) -> Filled:
        pieces = [self.task.source_dictionary[i] for i in hypo["fillers"].tolist()]
        probs = tuple(hypo["positional_scores"].exp().tolist())
        surfaces = tuple((" " if p.startswith("\u2581") else "") + filler_surface(p) for p in pieces)
        return Filled(fill_text(text, pieces), math.exp(hypo["score"]), surfaces, probs)

