"""GeoToken's network and its decoders: next-token prediction over S2 cell tokens.

:class:`TokenDecoder` is a small pre-norm transformer decoder: the condition (an image
embedding, through the baselines' MLP :class:`~locdiff.methods.network.Trunk`) becomes
``memory`` tokens that every layer cross-attends to (with retrieval, the neighbours'
embeddings and their token sequences join them); causal self-attention runs over a
learned start token and the tokens so far; each position has its own head over its
own vocabulary (:func:`locdiff.data.s2.vocabularies`: 6 faces, then 16 per pair of
levels). With ``neighbours`` (GeoToken's retrieval augmentation) each of the query's
nearest training photos adds a memory token: its embedding, its cell's tokens and its
similarity. :func:`beam_search` and :func:`sample` decode with fixed shapes (every
sequence padded to the full length), so both jit once: :class:`CachedStep` runs the
decoder on one token per position with the keys and values of those before it kept;
:func:`model_step`, the full pass at every position, is its reference.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from locdiff.methods.network import Trunk

MASKED = -1e9  # the logit of a token outside its position's vocabulary


class Block(nnx.Module):
    """Pre-norm causal self-attention, cross-attention to the memory, and an MLP."""

    def __init__(self, width: int, heads: int, feedforward: int, *, rngs: nnx.Rngs):
        self.norms = nnx.List([nnx.LayerNorm(width, rngs=rngs) for _ in range(3)])
        self.attend = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.cross = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.up = nnx.Linear(width, feedforward * width, rngs=rngs)
        self.down = nnx.Linear(feedforward * width, width, rngs=rngs)

    def __call__(self, h, memory, causal):
        h = h + self.attend(self.norms[0](h), mask=causal, deterministic=True)
        h = h + self.cross(self.norms[1](h), memory, deterministic=True)
        return h + self.down(jax.nn.gelu(self.up(self.norms[2](h))))


class TokenDecoder(nnx.Module):
    """``model(x [B, E], sequences [B, T]) -> [B, T, V]`` log-probabilities of each
    token given the condition and the tokens before it (teacher forcing); ``V`` is the
    largest vocabulary, the tokens outside a position's own get :data:`MASKED`."""

    def __init__(
        self, embed_dim: int, vocabularies: tuple[int, ...], *, hidden: int, depth: int,
        width: int, layers: int, heads: int, memory: int, feedforward: int = 4,
        neighbours: int = 0, rngs: nnx.Rngs, standardise: bool = True,
    ):  # fmt: skip
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs, standardise=standardise)
        self.neighbours = neighbours
        if neighbours:  # retrieval: the neighbours' embeddings, sequences and similarities
            self.neighbour_in = nnx.Linear(embed_dim, width, rngs=rngs)
            self.similarity_in = nnx.Linear(1, width, rngs=rngs)
        self.memory_tokens, self.width = memory, width
        self.to_memory = nnx.Linear(hidden, memory * width, rngs=rngs)
        self.vocabularies = tuple(int(v) for v in vocabularies)
        length, top = len(self.vocabularies), max(self.vocabularies)
        self.offsets = tuple(int(o) for o in np.cumsum((0,) + self.vocabularies[:-1]))
        self.embed = nnx.Embed(sum(self.vocabularies), width, rngs=rngs)
        init = nnx.initializers.normal(0.02)
        self.start = nnx.Param(init(rngs.params(), (width,)))
        self.position = nnx.Param(init(rngs.params(), (length, width)))
        self.blocks = nnx.List([Block(width, heads, feedforward, rngs=rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (length, width, top)))
        self.head_bias = nnx.Param(jnp.zeros((length, top)))

    @property
    def length(self) -> int:
        return len(self.vocabularies)

    def condition_memory(self, x) -> jax.Array:
        """``[B, memory, width]``: what the decoder attends to, from the condition."""
        return self.to_memory(self.trunk(x)).reshape(len(x), self.memory_tokens, self.width)

    def neighbour_memory(self, unit, sequences, similarity) -> jax.Array:
        """``[B, K, width]``: one memory token per neighbour, from its unit embedding
        ``unit [B, K, E]``, its token sequence ``sequences [B, K, T]`` (the mean of its
        tokens' embeddings) and its similarity to the query ``similarity [B, K]``."""
        b, k, length = sequences.shape
        tokens = self.embed_tokens(sequences.reshape(b * k, length)).mean(axis=1)
        return (
            self.neighbour_in(unit)
            + tokens.reshape(b, k, self.width)
            + self.similarity_in(similarity[..., None])
        )

    def memory_of(self, x, neighbours=None) -> jax.Array:
        """``[B, M (+ K), width]``: the condition's memory tokens, then (with retrieval)
        the neighbours' (``neighbours = (unit, sequences, similarity)``)."""
        memory = self.condition_memory(x)
        if not self.neighbours:
            return memory
        if neighbours is None:
            raise ValueError("this decoder reads the query's neighbours: give them")
        return jnp.concatenate([memory, self.neighbour_memory(*neighbours)], axis=1)

    def embed_tokens(self, sequences) -> jax.Array:
        """``[B, T, width]`` each token's embedding (its position's table) plus its position's."""
        index = sequences + jnp.asarray(self.offsets)[None, :]
        return self.embed(index) + self.position[...][None]

    def log_probs(self, memory, sequences) -> jax.Array:
        """``[B, T, V]`` from ``memory [B, M, width]`` and ``sequences [B, T]`` (position
        ``t`` reads the start token and ``sequences[:, :t]``)."""
        tokens = self.embed_tokens(sequences)[:, :-1]
        start = jnp.broadcast_to(self.start[...], (len(sequences), 1, self.width))
        h = jnp.concatenate([start, tokens], axis=1)  # [B, T, width]
        causal = nnx.make_causal_mask(sequences)
        for block in self.blocks:
            h = block(h, memory, causal)
        logits = (
            jnp.einsum("btw,twv->btv", self.norm(h), self.head[...]) + self.head_bias[...][None]
        )
        valid = jnp.arange(logits.shape[-1])[None, :] < jnp.asarray(self.vocabularies)[:, None]
        return jax.nn.log_softmax(jnp.where(valid[None], logits, MASKED), axis=-1)

    def __call__(self, x, sequences, neighbours=None) -> jax.Array:
        return self.log_probs(self.memory_of(x, neighbours), sequences)


# step(sequences [B, W, T], t) -> [B, W, V] log-probabilities of token t given the rest
Step = Callable[[jax.Array, int], jax.Array]


def beam_search(step: Step, batch: int, length: int, width: int):
    """The ``width`` most probable sequences of ``length`` tokens each of ``batch`` rows
    keeps, extending every kept prefix by every token at each position:
    ``(sequences [B, W, T] int32, log-probabilities [B, W])``, best first. Exact where
    ``width`` is at least the number of prefixes one token short of the full length
    (then every prefix is kept). A ``step`` with a ``reorder(beam [B, W])`` method
    (:class:`CachedStep`) is told which kept sequence each new one extends."""
    sequences = jnp.zeros((batch, width, length), jnp.int32)
    scores = jnp.full((batch, width), MASKED).at[:, 0].set(0.0)  # one live beam at first
    for t in range(length):
        logp = step(sequences, t)  # [B, W, V]
        vocab = logp.shape[-1]
        total = (scores[:, :, None] + logp).reshape(batch, width * vocab)
        scores, flat = jax.lax.top_k(total, width)
        beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        if hasattr(step, "reorder"):  # a step that keeps state per sequence follows them
            step.reorder(beam)
        sequences = jnp.take_along_axis(sequences, beam[:, :, None], axis=1)
        sequences = sequences.at[:, :, t].set(token)
    return sequences, scores


def sample(step: Step, key, batch: int, length: int, count: int, temperature: float):
    """``count`` sequences per row drawn token by token at ``temperature``, with their
    log-probabilities under the model (temperature 1): ``(sequences [B, S, T],
    log-probabilities [B, S])``, most probable first."""
    sequences = jnp.zeros((batch, count, length), jnp.int32)
    scores = jnp.zeros((batch, count))
    for t, k in enumerate(jax.random.split(key, length)):
        logp = step(sequences, t)  # [B, S, V]
        token = jax.random.categorical(k, logp / temperature, axis=-1).astype(jnp.int32)
        scores = scores + jnp.take_along_axis(logp, token[..., None], axis=-1)[..., 0]
        sequences = sequences.at[:, :, t].set(token)
    order = jnp.argsort(-scores, axis=1)
    return jnp.take_along_axis(sequences, order[..., None], axis=1), jnp.take_along_axis(
        scores, order, axis=1
    )


def model_step(model: TokenDecoder, memory) -> Step:
    """The decoders' ``step`` over ``model`` for ``memory [B, M, width]`` (each of a
    row's ``W`` sequences reads that row's memory)."""

    def step(sequences, t):
        b, w, length = sequences.shape
        rows = jnp.repeat(memory, w, axis=0)  # [B * W, M, width]
        logp = model.log_probs(rows, sequences.reshape(b * w, length))
        return logp[:, t].reshape(b, w, -1)

    return step


class CachedStep:
    """:func:`model_step`'s log-probabilities from one decoder pass per token: each
    layer's keys and values of the tokens so far are kept (and the memory's, computed
    once), so position ``t`` runs the decoder on token ``t`` alone. Called with
    ``t = 0, 1, ...`` in order (the sequences' tokens before ``t`` are those it has
    seen, as in :func:`beam_search` and :func:`sample`); :meth:`reorder` follows beam
    search's choice of the sequences kept. Inside one trace (the state is Python's)."""

    def __init__(self, model: TokenDecoder, memory):
        self.model, self.memory = model, memory
        self.cross, self.cache = None, None

    def _start(self, width: int, length: int):
        rows = jnp.repeat(self.memory, width, axis=0)  # [B * W, M, width]
        self.cross = [(b.cross.key(rows), b.cross.value(rows)) for b in self.model.blocks]
        self.cache = []
        for key, _ in self.cross:  # [B * W, T, heads, head width] per layer
            empty = jnp.zeros((len(rows), length, *key.shape[2:]), key.dtype)
            self.cache.append((empty, empty))

    def __call__(self, sequences, t: int):
        m = self.model
        b, w, length = sequences.shape
        if t == 0:
            self._start(w, length)
            h = jnp.broadcast_to(m.start[...], (b * w, 1, m.width))
        else:  # the token before t, embedded as in TokenDecoder.embed_tokens
            previous = sequences[:, :, t - 1].reshape(b * w, 1) + m.offsets[t - 1]
            h = m.embed(previous) + m.position[...][t - 1][None, None]
        seen = (jnp.arange(length) <= t)[None, None, None, :]  # [1, 1, 1, T] keys so far
        for i, block in enumerate(m.blocks):
            x = block.norms[0](h)
            keys, values = self.cache[i]
            keys = keys.at[:, t].set(block.attend.key(x)[:, 0])
            values = values.at[:, t].set(block.attend.value(x)[:, 0])
            self.cache[i] = (keys, values)
            h = h + _attend(block.attend, x, keys, values, seen)
            h = h + _attend(block.cross, block.norms[1](h), *self.cross[i])
            h = h + block.down(jax.nn.gelu(block.up(block.norms[2](h))))
        logits = m.norm(h)[:, 0] @ m.head[...][t] + m.head_bias[...][t][None]  # [B * W, V]
        valid = jnp.arange(logits.shape[-1]) < m.vocabularies[t]
        logp = jax.nn.log_softmax(jnp.where(valid[None], logits, MASKED), axis=-1)
        return logp.reshape(b, w, -1)

    def reorder(self, beam):
        """Keep, for each new sequence, the state of the one it extends (``beam [B, W]``)."""
        b, w = beam.shape
        parent = (jnp.arange(b)[:, None] * w + beam).reshape(-1)
        self.cache = [(k[parent], v[parent]) for k, v in self.cache]


def _attend(attention: nnx.MultiHeadAttention, x, keys, values, mask=None):
    """``attention``'s output for queries from ``x`` over given keys and values."""
    query = attention.query(x)
    return attention.out(attention.attention_fn(query, keys, values, mask=mask))
