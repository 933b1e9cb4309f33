"""The LM head's output projection and cross entropy in one pass, in chunks of rows.

The plain path writes the N x V logits, an fp32 N x V log-softmax and, in backward, two
more N x V tensors; with XLM-R's 250,002 symbols that is the largest activation of the
step. Here each chunk of rows computes its logits, log-sum-exp and the gradient
(softmax - one-hot) at once, multiplies that back into gradients for the input, the
weight and the bias, and frees it: peak memory is one chunk of logits, and backward only
scales the stored gradients. The same three matmuls run as in the plain path.

The weight may be padded to a multiple of ``pad_multiple`` rows for the matmul (tensor
cores want aligned leading dimensions); the padded columns get a bias of -inf, so they
take no probability and no gradient, and the loss is over the dictionary's true size.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, target: Tensor,
                ignore_index: int, pad_multiple: int, chunk_rows: int) -> Tuple[Tensor, Tensor]:
        vocab, rows_total = weight.size(0), x.size(0)
        pad = (-vocab) % pad_multiple
        w = F.pad(weight, (0, 0, 0, pad)) if pad else weight  # Vp x C
        b = F.pad(bias.float(), (0, pad), value=float("-inf"))  # Vp, fp32: padded columns get no mass
        keep = target.ne(ignore_index)  # N
        # ignored rows are zeroed in the N x C operands, never in an N x Vp pass
        # fp16 keeps its matmuls in fp32 here: unscaled softmax gradients underflow in fp16
        mm_dtype = torch.float32 if x.dtype == torch.float16 else x.dtype
        x_mm, w = x.to(mm_dtype), w.to(mm_dtype)
        x_kept = x_mm * keep.unsqueeze(1).to(mm_dtype)
        grad_x = torch.empty(x.shape, dtype=mm_dtype, device=x.device)  # N x C
        grad_b = torch.zeros_like(b)  # Vp, fp32
        # one chunk (the usual case) writes the weight gradient directly; several sum it,
        # in fp32 when the weights are half precision
        several = rows_total > chunk_rows
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=x.device) if several else None
        token_loss = torch.empty(rows_total, dtype=torch.float32, device=x.device)  # N
        for start in range(0, rows_total, chunk_rows):
            rows = slice(start, start + chunk_rows)
            xc, kc = x_mm[rows], keep[rows]
            tc = target[rows].masked_fill(~kc, 0).unsqueeze(1)  # n x 1
            logits = (xc @ w.t()).float().add_(b)  # n x Vp, fp32
            lse = torch.logsumexp(logits, dim=-1)  # n
            token_loss[rows] = (lse - logits.gather(1, tc).squeeze(1)) * kc
            # d loss / d logits = softmax - one-hot (rows of ignored targets are masked below)
            grad = logits.sub_(lse.unsqueeze(1)).exp_()
            grad.scatter_add_(1, tc, torch.full(tc.shape, -1.0, dtype=grad.dtype, device=grad.device))
            grad_b.addmv_(grad.t(), kc.to(grad.dtype))
            grad = grad.to(mm_dtype)
            grad_x[rows] = (grad @ w) * kc.unsqueeze(1).to(mm_dtype)
            if several:
                grad_w.add_(grad.t() @ x_kept[rows])
            else:
                grad_w = grad.t() @ x_kept[rows]  # Vp x C
            del logits, grad
        ctx.save_for_backward(grad_x, grad_w[:vocab], grad_b[:vocab])
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        ctx.mark_non_differentiable(token_loss)
        return token_loss.sum(), token_loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_token_loss: Optional[Tensor]):
        # the stored gradients are used once: scale them in place (fp16 loss scaling lands here)
        grad_x, grad_w, grad_b = ctx.saved_tensors
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        scale = grad_loss.float()
        return (grad_x.mul_(scale).to(x_dtype), grad_w.mul_(scale).to(weight_dtype),
                grad_b.mul_(scale).to(bias_dtype), None, None, None, None)


def linear_cross_entropy(x: Tensor, weight: Tensor, bias: Tensor, target: Tensor, ignore_index: int = -100,
                         pad_multiple: int = 1, chunk_rows: int = 2048) -> Tuple[Tensor, Tensor]:
    """Summed cross entropy of ``x @ weight.T + bias`` against ``target``, and the
    per-row losses (fp32, detached; 0 where ``target == ignore_index``).

    x: N x C, weight: V x C, bias: V, target: N. Equal to ``F.cross_entropy(F.linear(x,
    weight, bias).float(), target, reduction="sum")`` with gradients for x, weight, bias.
    """
    if x.size(0) == 0:  # no masked position in the batch: a zero loss that keeps the graph
        zero = (x.sum() + weight.sum() * 0 + bias.sum() * 0).float() * 0
        return zero, x.new_zeros(0, dtype=torch.float32)
    return _LinearCrossEntropy.apply(x, weight, bias, target, ignore_index, pad_multiple, chunk_rows)
