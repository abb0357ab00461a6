"""Documents as sparse term rows, and rows kept by id with cheap changes: the text side of
matching (tables/matching.py), with no notion of projects, workers or scores.

Documents are hashed (`HashingVectorizer`, 2**18 features, lowercase, English stop words minus
KEPT_WORDS) into term counts with sublinear tf, 1 + ln(count): hashing needs no vocabulary, so
nothing is ever refitted. `Rows` holds rows by id: a CSR "base" built at load, an overlay of rows
added or changed since, and a mask of base rows removed or overridden. When overlay plus masked
rows pass max(256, base/8) they are folded into a new base, so no change stacks all rows again and
a mat-vec never walks more than 1/8 extra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer

N_FEATURES: Final = 2**18
# Stop words that name things on a freelance marketplace: the Go language, front/back end,
# full stack, system design.
KEPT_WORDS: Final = frozenset({"go", "back", "front", "full", "system"})
WORD_PATTERN: Final = r"(?u)\b\w+(?:\.\w+)*[+#]*"
_FOLD_MIN: Final = 256

_VECTORIZER: Final = HashingVectorizer(
    n_features=N_FEATURES,
    alternate_sign=False,
    norm=None,
    lowercase=True,
    stop_words=sorted(ENGLISH_STOP_WORDS - KEPT_WORDS),
    token_pattern=WORD_PATTERN,
)
_WORD: Final = re.compile(WORD_PATTERN)

Floats = npt.NDArray[np.float64]


def skill_words(skills: Iterable[str]) -> str:
    parts: list[str] = []
    for skill in skills:
        tokens = _WORD.findall(skill.lower())
        parts.extend(tokens)
        if len(tokens) > 1:
            parts.append("_".join(tokens))
    return " ".join(parts)


def vectorize(texts: Sequence[str]) -> sp.csr_matrix:
    """Sublinear term weights, 1 + ln(count), one CSR row per text, indices unique per row."""
    if not texts:  # the hasher cannot take an empty batch
        return sp.csr_matrix((0, N_FEATURES))
    rows = _VECTORIZER.transform(texts).tocsr()
    rows.sum_duplicates()
    np.log(rows.data, out=rows.data)
    rows.data += 1.0
    return rows


class Row(NamedTuple):
    indices: npt.NDArray[np.int32]
    data: Floats


class Products(NamedTuple):
    """Per stored row, aligned: its id, row . vec, row^2 . sq_weights, and its extra value."""

    ids: npt.NDArray[np.object_]
    dots: Floats
    squares: Floats
    extras: Floats


def csr(rows: Sequence[Row]) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r.indices) for r in rows], out=indptr[1:])
    if not rows:
        return sp.csr_matrix((0, N_FEATURES))
    data = np.concatenate([r.data for r in rows])
    indices = np.concatenate([r.indices for r in rows])
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), N_FEATURES))


def squared(matrix: sp.csr_matrix) -> sp.csr_matrix:
    squared = matrix.copy()
    squared.data **= 2
    return squared


class Rows:
    """Sparse rows by id, each with one float `extra`: a CSR base, an overlay, a removal mask."""

    def __init__(self, fold_at: int | None = None) -> None:
        self._fold_at = fold_at
        self.rebuild([], sp.csr_matrix((0, N_FEATURES)), np.zeros(0))

    def rebuild(self, ids: Sequence[str], matrix: sp.csr_matrix, extras: Floats) -> None:
        self._ids = np.array(ids, dtype=object)
        self._position = {key: i for i, key in enumerate(ids)}
        self._base = matrix
        self._base_squared = squared(matrix)
        self._extras = np.asarray(extras, dtype=np.float64)
        self._alive = np.ones(len(ids), dtype=bool)
        self._masked = 0
        self._overlay: dict[str, tuple[Row, float]] = {}
        self._overlay_csr: tuple[npt.NDArray[np.object_], sp.csr_matrix, sp.csr_matrix] | None
        self._overlay_csr = None

    def __len__(self) -> int:
        return len(self._ids) - self._masked + len(self._overlay)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> Row | None:
        if key in self._overlay:
            return self._overlay[key][0]
        i = self._position.get(key)
        if i is None or not self._alive[i]:
            return None
        start, end = self._base.indptr[i], self._base.indptr[i + 1]
        return Row(self._base.indices[start:end], self._base.data[start:end])

    def put(self, key: str, row: Row, extra: float = 0.0) -> None:
        self._mask(key)
        self._overlay[key] = (row, extra)
        self._overlay_csr = None
        self._maybe_fold()

    def pop(self, key: str) -> Row | None:
        row = self.get(key)
        if self._overlay.pop(key, None) is not None:
            self._overlay_csr = None
        self._mask(key)
        self._maybe_fold()
        return row

    def products(self, vec: Floats, sq_weights: Floats) -> Products:
        ids, overlay, overlay_squared = self._overlay_matrix()
        alive = self._alive if self._masked else slice(None)
        extras = [self._extras[alive], np.array([e for _, e in self._overlay.values()])]
        return Products(
            np.concatenate([self._ids[alive], ids]),
            np.concatenate([(self._base @ vec)[alive], overlay @ vec]),
            np.concatenate(
                [(self._base_squared @ sq_weights)[alive], overlay_squared @ sq_weights]
            ),
            np.concatenate(extras).astype(np.float64),
        )

    def _mask(self, key: str) -> None:
        i = self._position.get(key)
        if i is not None and self._alive[i]:
            self._alive[i] = False
            self._masked += 1

    def _overlay_matrix(self) -> tuple[npt.NDArray[np.object_], sp.csr_matrix, sp.csr_matrix]:
        if self._overlay_csr is None:
            matrix = csr([row for row, _ in self._overlay.values()])
            self._overlay_csr = (
                np.array(list(self._overlay), dtype=object),
                matrix,
                squared(matrix),
            )
        return self._overlay_csr

    def _maybe_fold(self) -> None:
        limit = max(_FOLD_MIN, len(self._ids) // 8) if self._fold_at is None else self._fold_at
        if len(self._overlay) + self._masked > limit:
            self.fold()

    def fold(self) -> None:
        """Overlay and mask into a new base: O(nnz), once per `limit` changes."""
        keep = np.flatnonzero(self._alive)
        ids, overlay, _ = self._overlay_matrix()
        extras = [self._extras[keep], np.array([e for _, e in self._overlay.values()])]
        self.rebuild(
            [*self._ids[keep], *ids],
            sp.vstack([self._base[keep], overlay], format="csr"),
            np.concatenate(extras),
        )


def row_of(text: str) -> Row:
    matrix = vectorize([text])
    return Row(matrix.indices.astype(np.int32), matrix.data)


def unit_rows(matrix: sp.csr_matrix, idf: Floats) -> sp.csr_matrix:
    """Rows weighted by idf and scaled to unit length (an empty row stays empty)."""
    weighted = matrix.copy()
    weighted.data *= idf[weighted.indices]
    norms = np.sqrt(squared(weighted) @ np.ones(N_FEATURES))
    norms[norms == 0] = 1.0
    weighted.data /= np.repeat(norms, np.diff(weighted.indptr))
    return weighted
