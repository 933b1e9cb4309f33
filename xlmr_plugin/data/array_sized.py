"""Item sizes from one numpy array, the way fairseq's batching wants to read them."""
import numpy as np


class ArraySized:
    """Mixin for a dataset whose item sizes (its token counts) are ``self._sizes``: vectorised
    ``num_tokens_vec`` lets fairseq batch without a Python call per item."""

    _sizes: np.ndarray

    def __len__(self) -> int:
        return len(self._sizes)

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    def num_tokens(self, index: int) -> int:
        return int(self._sizes[index])

    def size(self, index: int) -> int:
        return int(self._sizes[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self._sizes[indices]
