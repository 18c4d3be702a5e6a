"""The fast kernels behind `dynamic_similarity_conv2d` (nslviz.nsl.conv): custom autograd Functions
that loop over the K = k² kernel taps (never over samples or positions) with hand-written backward
passes, and `choose_dynamic_impl`, which picks the faster of the two paths for a layer. They exist
only for speed and memory (measured on CPU: benchmarks/bench_nsl.py); the maths is in conv.py.
Each has a separate `setup_context`, a forward-mode `jvp` and a vmap rule (the two tap sums merge the
vmapped dimension into the batch; the patches are generated), so that torch.func transforms (`grad`,
`vmap`, `jvp` and their compositions) go through them as through autograd.

    _ShiftWeightSum            DNS from per-tap responses Z: out(b, p, f) = Σ_s m(b, p, s) · Z(b, p·stride + o_s, s, f)
    _RecomputedShiftWeightSum  the same sum, Z recomputed in backward instead of kept
    _Patches                   channels-last k×k patches (B, H', W', K, C) for the patches path

Shapes: B batch, C input channels, F filters, K taps, H×W input and H'×W' output positions.
"""
from __future__ import annotations

import torch


def channels_last_pixels(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) -> (B, H, W, C) contiguous: the memory of x in channels-last layout (no copy when x is
    channels-last already). Written without `memory_format`, which torch.func.vmap cannot query."""
    return x.permute(0, 2, 3, 1).contiguous()


def _tap_ranges(size_in: int, size_out: int, k: int, stride: int, padding: int) -> list[tuple[int, int, int]]:
    """For each tap offset d < k along one axis: (first, stop, input_first) such that the outputs
    i in [first, stop) read the input row i·stride + d − padding, which is inside the image (the
    other outputs see zero padding)."""
    ranges = []
    for d in range(k):
        first = max(0, -(-(padding - d) // stride))                             # ceil((padding − d) / stride)
        stop = min(size_out, (size_in - 1 + padding - d) // stride + 1)
        ranges.append((first, max(first, stop), first * stride + d - padding))
    return ranges


def _tap_slices(rows, cols, tap: int, k: int, stride: int):
    """(output slices, input slices) of one tap, or None when it only ever sees padding."""
    (r0, r1, ri), (c0, c1, ci) = rows[tap // k], cols[tap % k]
    if r1 <= r0 or c1 <= c0:
        return None
    out_sl = (slice(r0, r1), slice(c0, c1))
    in_sl = (slice(ri, ri + (r1 - r0 - 1) * stride + 1, stride), slice(ci, ci + (c1 - c0 - 1) * stride + 1, stride))
    return out_sl, in_sl


def _geometry(size_in, size_out, k: int, stride: int, padding: int) -> tuple:
    """(k, stride, row ranges, column ranges) of the taps from an H×W input map (size_in) to H'×W' output
    positions (size_out)."""
    (height, width), (out_h, out_w) = size_in, size_out
    return k, stride, _tap_ranges(height, out_h, k, stride, padding), _tap_ranges(width, out_w, k, stride, padding)


def _zeros(shape, dtype: torch.dtype, *sources: torch.Tensor, empty: bool = False) -> torch.Tensor:
    """A buffer of zeros (uninitialised if `empty`) for values computed from `sources`, made from their
    first elements' product so that under torch.func.vmap it is batched whenever one of them is (a
    plain buffer cannot take batched values in place). The backward passes need it: vmap(grad(...))
    runs them operation by operation; the forward sums have vmap rules of their own."""
    corner = sources[0][(slice(0, 1),) * sources[0].dim()]
    for source in sources[1:]:
        corner = corner * source[(slice(0, 1),) * source.dim()]
    return corner.new_empty(shape, dtype=dtype) if empty else corner.new_zeros(shape, dtype=dtype)


def _shift_sum(z: torch.Tensor, m: torch.Tensor, geometry) -> torch.Tensor:
    """out(b, p, f) = Σ_s m(b, p, s) · Z(b, p·stride + o_s, s, f): z (B, H, W, K, F), m (B, H', W', K)
    -> (B, H', W', F), accumulated in the wider of the two dtypes (float32 when Z is bf16 and M float32)."""
    k, stride, rows, cols = geometry
    batch, _, _, taps, filters = z.shape
    out_h, out_w = m.shape[1:3]
    out = z.new_zeros(batch, out_h, out_w, filters, dtype=torch.promote_types(z.dtype, m.dtype))
    for tap in range(taps):
        sl = _tap_slices(rows, cols, tap, k, stride)
        if sl is not None:
            (ro, co), (ri, ci) = sl
            out[:, ro, co].addcmul_(z[:, ri, ci, tap], m[:, ro, co, tap:tap + 1])
    return out


def _shift_sum_backward(grad: torch.Tensor, z: torch.Tensor, m: torch.Tensor, geometry, need_z: bool,
                        need_m: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of `_shift_sum` w.r.t. Z (dtype of Z) and m (dtype of m); one pass per tap. Under
    create_graph (grad mode on inside backward) every write is a differentiable op, so the gradients
    can be differentiated again (gradient penalties, MAXL's look-ahead step); otherwise the products
    go straight into grad_z (`out=`, which autograd cannot follow)."""
    k, stride, rows, cols = geometry
    grad = grad.contiguous()
    write_in_place = grad.dtype == z.dtype and not torch.is_grad_enabled()
    grad_z = None
    if need_z:   # stride 1: every tap writes all but a border strip, zero only that
        grad_z = _zeros(z.shape, z.dtype, grad, m, empty=stride == 1)
    grad_m = _zeros(m.shape, m.dtype, grad, z) if need_m else None
    for tap in range(z.shape[3]):
        sl = _tap_slices(rows, cols, tap, k, stride)
        if sl is None:
            if grad_z is not None:
                grad_z[:, :, :, tap] = 0
            continue
        (ro, co), (ri, ci) = sl
        grad_tap = grad[:, ro, co]                                              # (B, ·, ·, F)
        if grad_z is not None:
            if write_in_place:
                torch.mul(grad_tap, m[:, ro, co, tap:tap + 1], out=grad_z[:, ri, ci, tap])
            else:                                       # a float32 grad into bf16 Z, or a graph to keep
                grad_z[:, ri, ci, tap] = grad_tap * m[:, ro, co, tap:tap + 1]
            if stride == 1:
                grad_z[:, :ri.start, :, tap] = 0
                grad_z[:, ri.stop:, :, tap] = 0
                grad_z[:, :, :ci.start, tap] = 0
                grad_z[:, :, ci.stop:, tap] = 0
        if grad_m is not None:
            grad_m[:, ro, co, tap] = torch.linalg.vecdot(grad_tap, z[:, ri, ci, tap].to(grad_tap.dtype))   # Σ_f
    return grad_z, grad_m


def _per_tap(x: torch.Tensor, kernel: torch.Tensor, taps: int) -> torch.Tensor:
    """Z = W_s·X at every pixel, one matrix product: x (B, H, W, C), kernel (C, K·F) -> (B, H, W, K, F)."""
    batch, height, width, channels = x.shape
    return (x.reshape(-1, channels) @ kernel).view(batch, height, width, taps, kernel.shape[1] // taps)


def _into_batch(t: torch.Tensor, dim: int | None, size: int) -> torch.Tensor:
    """A tensor vmapped over `dim` (None: not vmapped, the same for all `size`) with that dimension
    merged into its batch dimension: (size·B, ...), for a Function that treats every sample alike."""
    t = t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)
    return t.flatten(0, 1)


def _bilinear_tangent(product, setting: tuple, a, a_tangent, b, b_tangent):
    """The forward-mode derivative of product(a, b, *setting), bilinear in (a, b): product(da, b) +
    product(a, db), either term left out where its tangent is None (None when both are)."""
    terms = [product(a_tangent, b, *setting) if a_tangent is not None else None,
             product(a, b_tangent, *setting) if b_tangent is not None else None]
    terms = [term for term in terms if term is not None]
    return sum(terms[1:], terms[0]) if terms else None


class _ShiftWeightSum(torch.autograd.Function):
    """DNS from per-tap responses, channels-last: out(b, p, f) = Σ_s m(b, p, s) · Z(b, p·stride + o_s, s, f).
    Z = W_s·X at every input pixel comes from one 1×1 conv to K·F channels (the official UNS trick,
    used here for DNS). One pass per tap over (B, H', W', F); the loop is over the K kernel taps,
    not over samples or positions. Saves Z (B·H·W·K·F numbers, 9× a plain convolution's output)
    and m for backward. z (B, H, W, K, F), m (B, H', W', K) -> (B, H', W', F)."""

    @staticmethod
    def forward(z, m, k, stride, padding):
        return _shift_sum(z, m, _geometry(z.shape[1:3], m.shape[1:3], k, stride, padding))

    @staticmethod
    def vmap(info, in_dims, z, m, k, stride, padding):   # the vmapped dimension joins the batch: one call
        z, m = _into_batch(z, in_dims[0], info.batch_size), _into_batch(m, in_dims[1], info.batch_size)
        return _ShiftWeightSum.apply(z, m, k, stride, padding).unflatten(0, (info.batch_size, -1)), 0

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, m, k, stride, padding = inputs
        ctx.geometry, ctx.arguments = _geometry(z.shape[1:3], m.shape[1:3], k, stride, padding), (k, stride, padding)
        ctx.save_for_backward(z, m)
        ctx.save_for_forward(z, m)

    @staticmethod
    def jvp(ctx, z_tangent, m_tangent, *_):             # bilinear: d(Σ m·Z) = Σ m·dZ + Σ dm·Z
        z, m = ctx.saved_tensors
        return _bilinear_tangent(_ShiftWeightSum.apply, ctx.arguments, z, z_tangent, m, m_tangent)

    @staticmethod
    def backward(ctx, grad):
        z, m = ctx.saved_tensors
        grad_z, grad_m = _shift_sum_backward(grad, z, m, ctx.geometry, ctx.needs_input_grad[0],
                                             ctx.needs_input_grad[1])
        return grad_z, grad_m, None, None, None


class _RecomputedShiftWeightSum(torch.autograd.Function):
    """The same DNS sum with Z = X·W_s recomputed in backward instead of kept: saves X (B·H·W·C),
    the per-tap kernel and m, i.e. K·F/C times less than Z (9× for a layer with C = F), for one extra
    1×1 convolution (a matrix product) in backward. x (B, H, W, C) channels-last, kernel (C, K·F),
    m (B, H', W', K) -> (B, H', W', F). Runs with autocast off on inputs already in the compute dtype."""

    @staticmethod
    def forward(x, kernel, m, k, stride, padding):
        return _shift_sum(_per_tap(x, kernel, k * k), m, _geometry(x.shape[1:3], m.shape[1:3], k, stride, padding))

    @staticmethod
    def vmap(info, in_dims, x, kernel, m, k, stride, padding):   # the vmapped dimension joins the batch
        size = info.batch_size
        x, m = _into_batch(x, in_dims[0], size), _into_batch(m, in_dims[2], size)
        if in_dims[1] is None:
            out = _RecomputedShiftWeightSum.apply(x, kernel, m, k, stride, padding)
        else:           # a kernel per vmapped sample (vmap over the weights): keep Z, as _ShiftWeightSum does
            z = torch.einsum("nbhwc,ncj->nbhwj", x.unflatten(0, (size, -1)), kernel.movedim(in_dims[1], 0))
            out = _ShiftWeightSum.apply(z.flatten(0, 1).unflatten(-1, (k * k, -1)), m, k, stride, padding)
        return out.unflatten(0, (size, -1)), 0

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, kernel, m, k, stride, padding = inputs
        ctx.geometry, ctx.arguments = _geometry(x.shape[1:3], m.shape[1:3], k, stride, padding), (k, stride, padding)
        ctx.save_for_backward(x, kernel, m)
        ctx.save_for_forward(x, kernel, m)

    @staticmethod
    def jvp(ctx, x_tangent, kernel_tangent, m_tangent, *_):   # Z = X·kernel is bilinear too
        x, kernel, m = ctx.saved_tensors
        taps = ctx.geometry[0] ** 2
        z_tangent = _bilinear_tangent(_per_tap, (taps,), x, x_tangent, kernel, kernel_tangent)
        return _bilinear_tangent(_ShiftWeightSum.apply, ctx.arguments, _per_tap(x, kernel, taps), z_tangent,
                                 m, m_tangent)

    @staticmethod
    def backward(ctx, grad):
        x, kernel, m = ctx.saved_tensors
        pixels = x.reshape(-1, x.shape[-1])                                               # (B·H·W, C)
        z = _per_tap(x, kernel, ctx.geometry[0] ** 2)                                     # recomputed
        need_z = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_z, grad_m = _shift_sum_backward(grad, z, m, ctx.geometry, need_z, ctx.needs_input_grad[2])
        del z
        grad_x = grad_kernel = None
        if need_z:
            grad_z = grad_z.view(pixels.shape[0], kernel.shape[1])                        # (B·H·W, K·F)
            if ctx.needs_input_grad[0]:
                grad_x = (grad_z @ kernel.t()).view_as(x)
            if ctx.needs_input_grad[1]:
                grad_kernel = pixels.t() @ grad_z
        return grad_x, grad_kernel, grad_m, None, None, None


class _Patches(torch.autograd.Function):
    """Channels-last patches: x (B, C, H, W) -> (B, H', W', K, C) with [b, i, j, t, c] = X(b, c, p_ij + o_t)
    (zero outside the image). K strided copies forward, K strided adds backward; unlike F.unfold the
    layout puts channels innermost, which is what the batched K×K similarity product wants."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, k, stride, padding, out_h, out_w):
        batch, channels = x.shape[:2]
        _, _, rows, cols = _geometry(x.shape[2:], (out_h, out_w), k, stride, padding)
        pixels = channels_last_pixels(x)                                               # (B, H, W, C)
        patches = x.new_zeros(batch, out_h, out_w, k * k, channels)
        for tap in range(k * k):
            sl = _tap_slices(rows, cols, tap, k, stride)
            if sl is not None:
                (ro, co), (ri, ci) = sl
                patches[:, ro, co, tap] = pixels[:, ri, ci]
        return patches

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, k, stride, padding, out_h, out_w = inputs
        ctx.geometry = (x.shape, *_geometry(x.shape[2:], (out_h, out_w), k, stride, padding))
        ctx.arguments = (k, stride, padding, out_h, out_w)

    @staticmethod
    def jvp(ctx, x_tangent, *_):                        # linear: the patches of the tangent
        return _Patches.forward(x_tangent, *ctx.arguments)

    @staticmethod
    def backward(ctx, grad):
        (batch, channels, height, width), k, stride, rows, cols = ctx.geometry
        grad_pixels = grad.new_zeros(batch, height, width, channels)
        for tap in range(k * k):
            sl = _tap_slices(rows, cols, tap, k, stride)
            if sl is not None:
                (ro, co), (ri, ci) = sl
                grad_pixels[:, ri, ci] += grad[:, ro, co, tap]
        return grad_pixels.permute(0, 3, 1, 2), None, None, None, None, None


def choose_dynamic_impl(diagonal: bool, stride: int, in_channels: int, out_channels: int) -> str:
    """The faster dynamic-NSL path for a layer (the one place that decides; benchmarks/bench_nsl.py):
    "taps" for DNS at stride 1 unless the layer widens (C_in < C_out: its K·C_out-channel per-tap
    responses outgrow the K·C_in-channel patches), "patches" otherwise (UNS, strided layers)."""
    return "taps" if diagonal and stride == 1 and in_channels >= out_channels else "patches"
