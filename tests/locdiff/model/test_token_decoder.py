"""GeoToken's decoder: beam search is exact where it can be enumerated, samples are scored."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from locdiff.data import s2
from locdiff.model import token_decoder as td


def _decoder(vocabularies):
    return td.TokenDecoder(8, vocabularies, hidden=16, depth=1, width=16, layers=2, heads=2,
                           memory=2, rngs=nnx.Rngs(0))  # fmt: skip


def _every_sequence(model, memory, vocabularies):
    """Each row's log-probability of every sequence: ``(sequences [S, T], [B, S])``."""
    every = jnp.array(list(itertools.product(*map(range, vocabularies))), jnp.int32)
    out = []
    for row in memory:
        logp = model.log_probs(jnp.repeat(row[None], len(every), axis=0), every)
        out.append(jnp.take_along_axis(logp, every[..., None], axis=-1)[..., 0].sum(-1))
    return np.asarray(every), np.asarray(jnp.stack(out))


def test_beam_search_returns_the_exact_top_sequences_when_it_keeps_every_prefix():
    vocabularies = s2.vocabularies(levels=4, per_token=2)  # 6 x 16 x 16 = 1,536 sequences
    model = _decoder(vocabularies)
    memory = model.condition_memory(jax.random.normal(jax.random.key(1), (3, 8)))
    every, total = _every_sequence(model, memory, vocabularies)
    np.testing.assert_allclose(np.exp(total).sum(axis=1), 1.0, rtol=1e-5)  # a distribution
    width = 6 * 16  # every prefix one token short
    seqs, scores = td.beam_search(td.model_step(model, memory), 3, 3, width)
    for b in range(3):
        order = np.argsort(-total[b], kind="stable")[:width]
        np.testing.assert_array_equal(np.asarray(seqs[b, 0]), every[order[0]])
        np.testing.assert_allclose(np.asarray(scores[b]), total[b, order], atol=1e-5)
        found = {tuple(s) for s in np.asarray(seqs[b])}
        assert found == {tuple(every[i]) for i in order}
    greedy, _ = td.beam_search(td.model_step(model, memory), 3, 3, 1)
    assert np.all(np.asarray(greedy)[:, 0, 0] < 6)  # the face's own vocabulary only


def test_samples_are_sorted_and_scored_by_the_model():
    vocabularies = s2.vocabularies(levels=4, per_token=2)
    model = _decoder(vocabularies)
    memory = model.condition_memory(jax.random.normal(jax.random.key(2), (2, 8)))
    every, total = _every_sequence(model, memory, vocabularies)
    index = {tuple(s): i for i, s in enumerate(every)}
    seqs, scores = td.sample(td.model_step(model, memory), jax.random.key(0), 2, 3, 40, 0.7)
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    assert np.all(np.diff(scores, axis=1) <= 0)
    for b in range(2):
        want = [total[b, index[tuple(s)]] for s in seqs[b]]
        np.testing.assert_allclose(scores[b], want, atol=1e-4)


def test_the_cached_step_decodes_as_the_full_decoder_does():
    """One decoder pass per token with kept keys and values gives the full pass's
    log-probabilities: the same beams and scores, the same samples (retrieval memory
    included)."""
    vocabularies = s2.vocabularies(levels=6, per_token=2)
    model = td.TokenDecoder(8, vocabularies, hidden=16, depth=1, width=16, layers=2, heads=2,
                            memory=2, neighbours=3, rngs=nnx.Rngs(3))  # fmt: skip
    x = jax.random.normal(jax.random.key(4), (4, 8))
    near = (
        jax.random.normal(jax.random.key(5), (4, 3, 8)),
        jax.random.randint(jax.random.key(6), (4, 3, len(vocabularies)), 0, 6),
        jax.random.uniform(jax.random.key(7), (4, 3)),
    )
    memory = model.memory_of(x, near)
    full, cached = td.model_step(model, memory), td.CachedStep(model, memory)
    seqs, scores = td.beam_search(full, 4, len(vocabularies), 5)
    seqs_c, scores_c = td.beam_search(cached, 4, len(vocabularies), 5)
    np.testing.assert_array_equal(np.asarray(seqs_c), np.asarray(seqs))
    np.testing.assert_allclose(np.asarray(scores_c), np.asarray(scores), atol=1e-5)
    key = jax.random.key(8)
    seqs, scores = td.sample(full, key, 4, len(vocabularies), 7, 1.3)
    seqs_c, scores_c = td.sample(td.CachedStep(model, memory), key, 4, len(vocabularies), 7, 1.3)
    np.testing.assert_array_equal(np.asarray(seqs_c), np.asarray(seqs))
    np.testing.assert_allclose(np.asarray(scores_c), np.asarray(scores), atol=1e-5)
