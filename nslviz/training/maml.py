"""Meta-learned static NSN: MAML on the static similarity M and the classifier.

NSL eq. (7) writes the objective over M alone, min_M Σ_τ L_τ(f_M′) with M′ = M − η ∇_M L_τ(f_M), and
sec. 7.2 says the test-time steps update M only. The appendix meta-trains M *and* the classifier, and
that is what is followed here:

    min_{M, W}  Σ_τ L_τ^query(f_{M′, W′})   with (M′, W′) the result of the inner loop on τ's support set:
        5 steps  (M, W) ← (M, W) − η ∇_{M,W} L_τ^support          η = 0.2
        20 steps W ← W − η ∇_W L_τ^support  (the classifier only, on the features of M′)

("first run 5 gradient steps on both the static similarity matrices and the classifier with step
size 0.2 ... additional 20 gradient steps ... on the classifier only"). The appendix does not say
whether the 20 classifier steps belong to meta-training or to testing only: here they are inside
meta-training, so the outer loop sees the classifier the test episodes will use. The
convolution weights stay those of the pretrained static NSN; W is the N-way classifier's weight and
bias, whose initialisation is meta-learned as in MAML (it starts at zero). The outer loop
differentiates through all 25 inner steps (second order; `first_order=True` drops the inner
gradients' own dependence on the parameters). At test time the same inner loop adapts to each
episode from the meta-learned (M, W).

Written with torch.func: `grad` gives the inner gradients, `vmap` runs the tasks of a meta-batch (or
the test episodes of a chunk) as one batch, and the outer gradient is ordinary autograd through both.
The same style as `nslviz.neighborhoods.finetune_functional`. The 20 classifier steps run on the
support features computed once with M′ (they do not change while only W moves), so they cost a
linear model's steps, not a network's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad, vmap
from tqdm.auto import tqdm

from .._checks import check_flags, check_positive
from ..datasets.episodes import Episodes
from .episodic import (FunctionalBackbone, Parameters, episode_accuracy, episode_images, linear_logits,
                       zero_classifier)


@dataclass(frozen=True)
class InnerLoop:
    """The MAML inner loop of the meta-learned static NSN (NSL Appendix, Table 6)."""
    steps: int = 5                 # on M and the classifier
    classifier_steps: int = 20     # then on the classifier only
    step_size: float = 0.2         # η, both phases
    first_order: bool = False

    def __post_init__(self):
        check_positive("inner steps", self.steps, integer=True, minimum=0)
        check_positive("classifier steps", self.classifier_steps, integer=True, minimum=0)
        check_positive("inner step size", self.step_size)
        check_flags(first_order=self.first_order)


def _detached(params: Parameters) -> Parameters:
    return {name: value.detach() for name, value in params.items()}


def adapt_task(network: FunctionalBackbone, init: Parameters, support: torch.Tensor, support_labels: torch.Tensor,
               inner: InnerLoop) -> tuple[Parameters, Parameters]:
    """The inner loop for one task: init = {M names..., "weight", "bias"}; support (S, C, H, W),
    labels (S,). Returns (M′, classifier′), differentiable in `init` (unless first order)."""
    names = network.similarity_names

    def support_loss(params: Parameters) -> torch.Tensor:
        features = network.features(support, {name: params[name] for name in names})       # (S, D)
        return F.cross_entropy(linear_logits(features, params), support_labels)

    params = dict(init)
    for _ in range(inner.steps):                                                             # M and W
        gradients = grad(support_loss)(_detached(params) if inner.first_order else params)
        params = {name: params[name] - inner.step_size * gradients[name] for name in params}
    similarity = {name: params[name] for name in names}
    classifier = {"weight": params["weight"], "bias": params["bias"]}
    if inner.classifier_steps:
        features = network.features(support, similarity)                                   # (S, D) with M′

        def head_loss(head: Parameters, features: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(linear_logits(features, head), support_labels)

        for _ in range(inner.classifier_steps):                                              # W only
            source = (_detached(classifier), features.detach()) if inner.first_order else (classifier, features)
            gradients = grad(head_loss)(*source)
            classifier = {name: classifier[name] - inner.step_size * gradients[name] for name in classifier}
    return similarity, classifier


def task_query_loss(network: FunctionalBackbone, init: Parameters, support: torch.Tensor,
                    support_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor,
                    inner: InnerLoop) -> tuple[torch.Tensor, torch.Tensor]:
    """(query loss, query accuracy) of one task after the inner loop: L_τ(f_{M′, W′}) of eq. (7)."""
    similarity, classifier = adapt_task(network, init, support, support_labels, inner)
    logits = linear_logits(network.features(query, similarity), classifier)                 # (Q, way)
    return F.cross_entropy(logits, query_labels), (logits.argmax(-1) == query_labels).float().mean()


def meta_loss(network: FunctionalBackbone, init: Parameters, support: torch.Tensor, support_labels: torch.Tensor,
              query: torch.Tensor, query_labels: torch.Tensor, inner: InnerLoop) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (7) on a meta-batch of T tasks: the mean query loss after each task's inner loop, and the
    per-task query accuracies (T,). support (T, S, C, H, W), labels (T, S); query (T, Q, ...), (T, Q)."""
    losses, accuracies = vmap(lambda *task: task_query_loss(network, init, *task, inner))(
        support, support_labels, query, query_labels)
    return losses.mean(), accuracies


@torch.no_grad()
def start_accuracy(network: FunctionalBackbone, init: Parameters, query: torch.Tensor,
                   query_labels: torch.Tensor) -> torch.Tensor:
    """The query accuracy (T,) of the start (M, W) itself, before any inner step: query (T, Q, C, H, W),
    labels (T, Q). MAML learns a start to adapt from, not to predict with: near chance, 1/way."""
    similarity = {name: init[name] for name in network.similarity_names}
    logits = vmap(lambda images: linear_logits(network.features(images, similarity), init))(query)   # (T, Q, way)
    return episode_accuracy(logits, query_labels)


def initial_parameters(network: FunctionalBackbone, way: int) -> Parameters:
    """Where meta-learning starts: the pretrained M and a zero N-way classifier (leaf tensors)."""
    init = {**network.initial_similarity(), **zero_classifier(network, way)}
    return {name: value.requires_grad_() for name, value in init.items()}


def meta_train(network: FunctionalBackbone, images: torch.Tensor, episodes: Episodes, *, meta_batch: int,
               lr: float = 1e-3, inner: InnerLoop = InnerLoop(), progress: bool = False) -> tuple[Parameters, list[dict]]:
    """Meta-learn (M, W) with Adam (lr) on `episodes` (drawn from the meta-training classes of the
    uint8 `images`), `meta_batch` tasks per step. Returns the learned init and one history row per
    step: step, meta_loss, query_acc (after the inner loop) and query_acc_before (of the start itself,
    `start_accuracy`), both on the step's tasks before it learns from them."""
    check_positive("meta_batch", meta_batch, integer=True)
    check_positive("meta lr", lr)
    device = network.device
    init = initial_parameters(network, episodes.way)
    optimizer = torch.optim.Adam(init.values(), lr=lr)
    history = []
    steps = len(episodes) // meta_batch
    for step in tqdm(range(steps), desc="meta-training", disable=not progress, leave=False):
        batch = episodes.slice(step * meta_batch, (step + 1) * meta_batch)
        query, query_labels = episode_images(images, batch.query, device), batch.query_labels.to(device)
        loss, accuracies = meta_loss(network, init, episode_images(images, batch.support, device),
                                     batch.support_labels.to(device), query, query_labels, inner)
        before = start_accuracy(network, init, query, query_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"step": step + 1, "meta_loss": loss.item(), "query_acc": accuracies.detach().mean().item(),
                        "query_acc_before": before.mean().item()})
    return {name: value.detach() for name, value in init.items()}, history


def maml_episodes(network: FunctionalBackbone, init: Parameters, support: torch.Tensor, support_labels: torch.Tensor,
                  query: torch.Tensor, query_labels: torch.Tensor, inner: InnerLoop = InnerLoop()) -> torch.Tensor:
    """Test time: adapt from the meta-learned `init` on every episode's support set (the inner loop),
    return each episode's query accuracy (E,). Shapes as in `meta_loss`."""
    init = {name: value.detach() for name, value in init.items()}

    def adapted_logits(support, support_labels, query):
        similarity, classifier = adapt_task(network, init, support, support_labels, inner)
        return linear_logits(network.features(query, similarity), classifier)

    with torch.no_grad():                              # torch.func.grad inside still differentiates
        logits = vmap(adapted_logits)(support, support_labels, query)                      # (E, Q, way)
    return episode_accuracy(logits, query_labels)


__all__ = ["InnerLoop", "adapt_task", "initial_parameters", "maml_episodes", "meta_loss", "meta_train",
           "start_accuracy", "task_query_loss"]
