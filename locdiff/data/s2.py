"""S2 cells as token sequences: GeoToken's vocabulary of places.

S2 projects the sphere onto the six faces of a cube, then cuts each face into a
quadtree whose four children are numbered along a Hilbert curve; a cell of level ``l``
is its face and ``l`` child positions (0-3). :func:`tokens` writes a location's cell of
level ``levels`` as a sequence: the face (vocabulary 6), then the child positions
grouped ``per_token`` levels per token (vocabulary ``4 ** per_token``): the default,
level 20 in pairs, is GeoToken's 11 tokens (6, then ten of 16). :func:`centres` turns
sequences back into their cells' centres (a level-20 cell is about 10 m across).

Vectorised for ``numpy`` (float64: the reference implementation's cell, bit for bit, as
the tests check against ``s2sphere``) and ``jax.numpy`` (``xp=jnp``, in the train step:
float32 there, so a point within a metre of a level-20 edge may get the neighbouring
cell). The tables and the projection are S2's (``s2geometry``'s ``s2coords``): the
quadratic uv-to-st transform, ``kIJtoPos``, ``kPosToIJ``, ``kPosToOrientation``.
"""

from __future__ import annotations

import numpy as np

FACES = 6
MAX_LEVEL = 30  # S2's finest level
# The child position (Hilbert order) of each (i bit, j bit) = 2 i + j, per orientation;
# its inverse; and how a child's orientation differs from its parent's (swap 1, invert 2).
IJ_TO_POS = np.array([[0, 1, 3, 2], [0, 3, 1, 2], [2, 3, 1, 0], [2, 1, 3, 0]], np.int32)
POS_TO_IJ = np.array([[0, 1, 3, 2], [0, 2, 3, 1], [3, 2, 0, 1], [3, 1, 0, 2]], np.int32)
POS_TO_ORIENTATION = np.array([1, 0, 0, 3], np.int32)


def check_levels(levels: int, per_token: int) -> None:
    """``ValueError`` unless ``levels`` is cut into whole tokens of ``per_token`` levels."""
    if not (1 <= per_token <= levels <= MAX_LEVEL and levels % per_token == 0):
        raise ValueError(
            f"need 1 <= per_token <= levels <= {MAX_LEVEL} with levels a multiple of "
            f"per_token, got levels={levels}, per_token={per_token}"
        )


def vocabularies(levels: int = 20, per_token: int = 2) -> tuple[int, ...]:
    """The vocabulary of each position of the sequence: ``(6, 4**per_token, ...)``."""
    check_levels(levels, per_token)
    return (FACES,) + (4**per_token,) * (levels // per_token)


def _xyz(latlon, xp):
    lat, lon = xp.radians(latlon[..., 0]), xp.radians(latlon[..., 1])
    return xp.cos(lat) * xp.cos(lon), xp.cos(lat) * xp.sin(lon), xp.sin(lat)


def face_uv(latlon, xp=np):
    """``(face, u, v)`` of locations ``latlon [..., 2]`` degrees: the cube face the point
    projects onto (its largest coordinate: 0-2 positive x, y, z; 3-5 negative) and its
    coordinates on that face, in [-1, 1]."""
    x, y, z = _xyz(latlon, xp)
    ax, ay, az = xp.abs(x), xp.abs(y), xp.abs(z)
    axis = xp.where((ax >= ay) & (ax >= az), 0, xp.where(ay >= az, 1, 2))
    big = xp.where(axis == 0, x, xp.where(axis == 1, y, z))
    face = (axis + 3 * (big < 0)).astype(xp.int32)
    # S2's ValidFaceXYZtoUV, face by face: numerators over the face's own coordinate
    nu, nv = (y, -x, -x, z, z, -y), (z, z, -y, y, -x, -x)
    u, v = nu[5], nv[5]
    for f in range(4, -1, -1):
        u, v = xp.where(face == f, nu[f], u), xp.where(face == f, nv[f], v)
    u, v = u / big, v / big
    return face, u, v


def _uv_to_st(u, xp):
    half = 0.5 * xp.sqrt(1 + 3 * xp.abs(u))
    return xp.where(u >= 0, half, 1 - half)


def _st_to_uv(s):
    return np.where(s >= 0.5, (4 * s * s - 1) / 3, (1 - 4 * (1 - s) ** 2) / 3)


def tokens(latlon, *, levels: int = 20, per_token: int = 2, xp=np):
    """``[..., 1 + levels // per_token]`` int32: each location's cell of level
    ``levels`` as its face, then its child positions ``per_token`` levels per token
    (the earlier level in the higher digits, base 4)."""
    check_levels(levels, per_token)
    latlon = xp.asarray(latlon)
    face, u, v = face_uv(latlon, xp)
    size = 2**levels
    i = xp.clip(xp.floor(_uv_to_st(u, xp) * size), 0, size - 1).astype(xp.int32)
    j = xp.clip(xp.floor(_uv_to_st(v, xp) * size), 0, size - 1).astype(xp.int32)
    ij_to_pos, to_orientation = xp.asarray(IJ_TO_POS), xp.asarray(POS_TO_ORIENTATION)
    orientation = face & 1
    out, token = [face], xp.zeros_like(face)
    for level in range(1, levels + 1):
        shift = levels - level
        ij = ((i >> shift) & 1) * 2 + ((j >> shift) & 1)
        pos = ij_to_pos[orientation, ij]
        orientation = orientation ^ to_orientation[pos]
        token = token * 4 + pos
        if level % per_token == 0:
            out.append(token)
            token = xp.zeros_like(face)
    return xp.stack(out, axis=-1).astype(xp.int32)


def positions(sequences, per_token: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(face [...], child positions [..., levels])`` of token ``sequences``."""
    sequences = np.asarray(sequences, np.int64)
    digits = [(sequences[..., 1:] >> (2 * (per_token - 1 - k))) & 3 for k in range(per_token)]
    pos = np.stack(digits, axis=-1).reshape(*sequences.shape[:-1], -1)
    return sequences[..., 0], pos


def cell_ids(sequences, per_token: int = 2) -> np.ndarray:
    """``[...]`` uint64: the S2 cell ids of token ``sequences`` (as ``s2sphere.CellId.id()``)."""
    face, pos = positions(sequences, per_token)
    levels = pos.shape[-1]
    cell = face.astype(np.uint64) << np.uint64(61)
    for level in range(levels):
        cell |= pos[..., level].astype(np.uint64) << np.uint64(59 - 2 * level)
    return cell | (np.uint64(1) << np.uint64(2 * (MAX_LEVEL - levels)))


def centres(sequences, per_token: int = 2) -> np.ndarray:
    """``[..., 2]`` degrees: the centre of the cell of each token sequence."""
    face, pos = positions(sequences, per_token)
    levels = pos.shape[-1]
    orientation, i, j = face & 1, np.zeros_like(face), np.zeros_like(face)
    for level in range(levels):
        ij = POS_TO_IJ[orientation, pos[..., level]]
        i, j = i * 2 + (ij >> 1), j * 2 + (ij & 1)
        orientation = orientation ^ POS_TO_ORIENTATION[pos[..., level]]
    u, v = _st_to_uv((i + 0.5) / 2**levels), _st_to_uv((j + 0.5) / 2**levels)
    one = np.ones_like(u)
    # S2's FaceUVtoXYZ, face by face
    xyz = np.stack(
        [
            np.choose(face, [one, -u, -u, -one, v, v]),
            np.choose(face, [u, one, -v, -v, -one, u]),
            np.choose(face, [v, v, one, -u, -u, -one]),
        ],
        axis=-1,
    )
    xyz /= np.linalg.norm(xyz, axis=-1, keepdims=True)
    lat = np.degrees(np.arcsin(np.clip(xyz[..., 2], -1, 1)))
    return np.stack([lat, np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0]))], axis=-1)
