"""Plain per-example autograd implementations of MN eq. (1)-(3), the ground truth for the fast paths."""
import torch
import torch.nn.functional as F


def reference_attention(features, keys, similarity, temperature):
    rows = []
    for z in features:                                   # one example at a time
        if similarity == "cosine":
            sim = F.cosine_similarity(z[None, :], keys, dim=1, eps=1e-12)
        elif similarity == "neg_sq_euclidean":
            sim = -((z[None, :] - keys) ** 2).sum(dim=1)
        else:
            sim = keys @ z
        rows.append(torch.softmax(sim / temperature, dim=0))
    return torch.stack(rows)


def _f(inputs, weight, bias, scale, classifier):
    if classifier == "cosine":
        return scale * F.normalize(inputs, dim=-1) @ F.normalize(weight, dim=-1).T
    return inputs @ weight.T + bias


def _entry_losses(logits, values, loss):
    if loss == "cross_entropy":
        return -(values * torch.log_softmax(logits, dim=-1)).sum(-1)
    if loss == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(logits, values, reduction="none").sum(-1)
    return ((logits - values) ** 2).mean(-1)


def reference_head(head, features):
    """MetaNeighborhoodsHead.forward, one example at a time with torch.autograd.grad."""
    keys, values = head.dictionary.keys, head.dictionary.values
    attention = reference_attention(features, keys, head.attention.similarity, head.attention.temperature)
    step = head.inner_step_size.abs()
    outputs = []
    for i in range(features.shape[0]):
        weight, bias = head.weight, head.bias
        for _ in range(head.inner_steps):
            if head.first_order:
                w_in = weight.detach().requires_grad_(True)
                b_in = None if bias is None else bias.detach().requires_grad_(True)
            else:
                w_in, b_in = weight, bias
            inner = (attention[i] * _entry_losses(_f(keys, w_in, b_in, head.scale, head.classifier),
                                                  values, head.loss)).sum()
            wrt = [w_in] if b_in is None else [w_in, b_in]
            grads = torch.autograd.grad(inner, wrt, create_graph=True)
            if step.dim() == 0:
                weight = weight - step * grads[0]
                if bias is not None:
                    bias = bias - step * grads[1]
            else:
                weight = weight - step[: head.feature_dim] * grads[0]
                if bias is not None:
                    bias = bias - step[-1] * grads[1]
        outputs.append(_f(features[i:i + 1], weight, bias, head.scale, head.classifier)[0])
    return torch.stack(outputs)


def reference_functional(module, inputs):
    """FunctionalMetaNeighborhoods.forward, one example at a time with torch.autograd.grad."""
    model = module.model
    keys, values = module.dictionary.keys, module.dictionary.values
    attention = reference_attention(inputs, keys, module.attention.similarity, module.attention.temperature)
    names = [n for n, _ in model.named_parameters()]
    base = dict(model.named_parameters())
    steps = module._step_sizes()
    outputs = []
    for i in range(inputs.shape[0]):
        params = dict(base)
        for _ in range(module.inner_steps):
            source = {n: params[n].detach().requires_grad_(True) for n in names} if module.first_order else params
            out = torch.func.functional_call(model, source, (keys,))
            inner = (attention[i] * _entry_losses(out, values, module.loss)).sum()
            grads = torch.autograd.grad(inner, [source[n] for n in names], create_graph=True)
            params = {n: params[n] - steps[n].abs() * g for n, g in zip(names, grads)}
        outputs.append(torch.func.functional_call(model, params, (inputs[i:i + 1],))[0])
    return torch.stack(outputs)
