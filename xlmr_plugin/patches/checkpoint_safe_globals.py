"""Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read fairseq checkpoints.

fairseq pickles its config into every checkpoint (an argparse.Namespace and an omegaconf
DictConfig), numpy scalars in its meters and optimizer history, so torch's safe
unpickler refuses them with "Unsupported global" and resuming, fairseq-interactive and
``from_pretrained`` all break. Allow-listing exactly these classes keeps the safe loader
(no code runs from a checkpoint) instead of turning it off.
"""
import argparse
import collections
import importlib
import typing
from typing import List

import numpy as np
import omegaconf
import torch
from omegaconf import base, nodes


def _numpy_globals() -> List[object]:
    # numpy 2 pickles scalars as numpy._core.multiarray.scalar, numpy 1 as numpy.core...
    name = "numpy._core.multiarray" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core.multiarray"
    multiarray = importlib.import_module(name)
    allowed: List[object] = [multiarray.scalar, multiarray._reconstruct, np.dtype, np.ndarray]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes as np.dtypes.*DType
    if dtypes is not None:
        allowed.extend(getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType"))
    return allowed


def fairseq_checkpoint_globals() -> List[object]:
    """Classes and functions that appear in the pickles of fairseq checkpoints."""
    omegaconf_nodes = [getattr(nodes, n) for n in dir(nodes) if n.endswith("Node")]
    return [
        argparse.Namespace,
        collections.defaultdict,  # omegaconf's (empty) resolver cache
        collections.OrderedDict,
        typing.Any,
        # omegaconf's node metadata refers to builtin types (ref_type, key_type, ...)
        dict, list, tuple, int, float, bool, str, bytes,
        omegaconf.DictConfig,
        omegaconf.ListConfig,
        base.ContainerMetadata,
        base.Metadata,
        *omegaconf_nodes,
        *_numpy_globals(),
    ]


def allow_fairseq_checkpoints() -> None:
    if hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4 loads them anyway
        torch.serialization.add_safe_globals(fairseq_checkpoint_globals())
