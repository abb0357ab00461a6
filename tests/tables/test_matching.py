from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest

from tables.matching import (
    MIN_TEXT,
    Match,
    Matcher,
    ProjectInput,
    WorkerInput,
    project_text,
    vectorize,
    worker_text,
)
from tables.matching_synthetic import synthetic_corpus


def worker(
    worker_id: str,
    skills: Sequence[str],
    *,
    bayesian: float | None = None,
    availability: str = "available",
    bio: str = "",
) -> WorkerInput:
    return WorkerInput(worker_id, worker_text(skills, "", bio, ""), bayesian, availability)


def project(project_id: str, skills: Sequence[str], description: str = "") -> ProjectInput:
    return ProjectInput(project_id, project_text("", description, skills))


def ids(ranking: Sequence[Match] | None) -> list[str]:
    assert ranking is not None
    return [m.worker_id for m in ranking]


def scores(ranking: Sequence[Match] | None) -> dict[str, float]:
    assert ranking is not None
    return {m.worker_id: m.score for m in ranking}


def test_a_worker_with_the_projects_skills_ranks_above_one_with_some_of_them() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("partial", ["python"]))
    matcher.upsert_worker(worker("full", ["python", "django", "postgresql"]))
    change = matcher.upsert_project(project("p", ["python", "django", "postgresql"]))
    assert ids(change.ranking) == ["full", "partial"]
    assert [m.rank for m in change.ranking] == [1, 2]
    assert change.ranking[0].text == pytest.approx(1.0)
    assert 0 < change.ranking[1].text < change.ranking[0].text
    assert change.changed == ("full", "partial")


def test_a_worker_without_overlap_is_not_ranked_however_good_its_rating() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("designer", ["logo design", "photoshop"], bayesian=5.0))
    matcher.upsert_worker(worker("coder", ["rust"], bayesian=1.0, availability="unavailable"))
    change = matcher.upsert_project(project("p", ["rust", "webassembly"]))
    assert ids(change.ranking) == ["coder"]


def test_symbols_and_short_names_are_words_of_their_own() -> None:
    matcher = Matcher()
    for name in ("c++", "c#", "go", "node.js"):
        matcher.upsert_worker(worker(name, [name]))
    for name in ("c++", "c#", "go", "node.js"):
        assert ids(matcher.upsert_project(project(f"needs {name}", [name])).ranking) == [name]


def test_a_multi_word_skill_counts_as_the_skill_and_as_its_words() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("ml", ["machine learning"]))
    matcher.upsert_worker(worker("words", ["machine", "learning"]))
    ranking = matcher.upsert_project(project("p", ["machine learning"])).ranking
    assert ids(ranking) == ["ml", "words"]


def test_rating_orders_equally_relevant_workers_and_no_reviews_is_the_prior() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("high", ["python"], bayesian=4.5))
    matcher.upsert_worker(worker("new", ["python"], bayesian=None))
    matcher.upsert_worker(worker("low", ["python"], bayesian=2.0))
    ranking = matcher.upsert_project(project("p", ["python"])).ranking
    assert ids(ranking) == ["high", "new", "low"]
    by_id = {m.worker_id: m for m in ranking}
    assert by_id["new"].rating == 0.625  # (3.5 - 1) / 4
    assert by_id["high"].rating == 0.875
    # Same text: the scores differ by exactly W_RATING times the rating parts.
    assert by_id["high"].score - by_id["new"].score == pytest.approx(0.2 * 0.25, abs=1e-11)
    assert by_id["new"].score == pytest.approx(0.7 * 1.0 + 0.2 * 0.625 + 0.1 * 1.0, abs=1e-11)


def test_availability_orders_equally_relevant_workers() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("busy", ["python"], availability="busy"))
    matcher.upsert_worker(worker("away", ["python"], availability="unavailable"))
    matcher.upsert_worker(worker("free", ["python"], availability="available"))
    ranking = matcher.upsert_project(project("p", ["python"])).ranking
    assert ids(ranking) == ["free", "busy", "away"]
    assert [m.availability for m in ranking or ()] == [1.0, 0.5, 0.0]
    assert scores(ranking)["free"] - scores(ranking)["busy"] == pytest.approx(0.05, abs=1e-11)


def test_an_unknown_availability_is_refused() -> None:
    with pytest.raises(ValueError, match="availability"):
        Matcher().upsert_worker(worker("w", ["python"], availability="sometimes"))


def test_equal_scores_are_ordered_by_worker_id_whatever_the_insertion_order() -> None:
    names = ["w-c", "w-a", "w-d", "w-b"]
    for order in (names, names[::-1]):
        matcher = Matcher()
        matcher.upsert_project(project("p", ["kotlin"]))
        for name in order:
            matcher.upsert_worker(worker(name, ["kotlin"]))
        assert ids(matcher.ranking("p")) == ["w-a", "w-b", "w-c", "w-d"]
        assert ids(matcher.upsert_project(project("p", ["kotlin"])).ranking) == sorted(names)


def test_changing_a_workers_skills_moves_it_and_reports_who_moved() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("a", ["python", "django"]))
    matcher.upsert_worker(worker("b", ["java"]))
    matcher.upsert_worker(worker("c", ["python"]))
    matcher.upsert_project(project("p", ["python", "django"]))
    matcher.upsert_project(project("other", ["haskell"]))
    assert ids(matcher.ranking("p")) == ["a", "c"]

    changes = matcher.upsert_worker(worker("b", ["python", "django"], bayesian=5.0))

    assert [c.project_id for c in changes] == ["p"]
    assert ids(changes[0].ranking) == ["b", "a", "c"]
    assert changes[0].changed == ("a", "b", "c")  # b entered; a and c each moved down one
    assert matcher.ranking("other") == ()

    # Dropping django moves b below c's rating-less python, and only b and c change places.
    changes = matcher.upsert_worker(worker("b", ["python"], availability="unavailable"))
    assert ids(changes[0].ranking) == ["a", "c", "b"]
    assert changes[0].changed == ("a", "b", "c")
    assert matcher.upsert_worker(worker("b", ["python"], availability="unavailable")) == []


def test_a_worker_whose_new_skills_miss_the_project_leaves_its_ranking() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("a", ["python"]))
    matcher.upsert_worker(worker("b", ["python"]))
    matcher.upsert_project(project("p", ["python"]))
    changes = matcher.upsert_worker(worker("a", ["cobol"]))
    assert [(c.project_id, ids(c.ranking), c.changed) for c in changes] == [
        ("p", ["b"], ("a", "b"))
    ]


def test_a_new_rating_and_availability_at_the_same_score_are_reported() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("w", ["elixir"], bayesian=4.0, availability="busy"))
    before = matcher.upsert_project(project("p", ["elixir"])).ranking[0]
    # 0.2 * (3.0 - 1) / 4 + 0.1 * 1.0 == 0.2 * (4.0 - 1) / 4 + 0.1 * 0.5
    changes = matcher.upsert_worker(worker("w", ["elixir"], bayesian=3.0, availability="available"))
    assert [c.changed for c in changes] == [("w",)]
    after = changes[0].ranking[0]
    assert (after.rating, after.availability) == (0.5, 1.0)
    assert after.score == pytest.approx(before.score, abs=1e-11)


@pytest.mark.parametrize("spare", [0, 10])
def test_a_list_filled_by_worker_updates_refills_after_a_removal(spare: int) -> None:
    matcher = Matcher(top_k=2, spare=spare)
    matcher.upsert_project(project("p", ["go", "grpc"]))
    for name, stars in [("first", 5.0), ("second", 4.0), ("third", 3.0), ("fourth", 2.0)]:
        matcher.upsert_worker(worker(name, ["go", "grpc"], bayesian=stars))
    assert ids(matcher.ranking("p")) == ["first", "second"]
    matcher.remove_worker("first")
    matcher.remove_worker("second")
    assert ids(matcher.ranking("p")) == ["third", "fourth"]


@pytest.mark.parametrize("spare", [0, 10])
def test_removing_a_ranked_worker_refills_the_list_with_the_next_best(spare: int) -> None:
    matcher = Matcher(top_k=2, spare=spare)
    matcher.upsert_worker(worker("first", ["go", "grpc"], bayesian=5.0))
    matcher.upsert_worker(worker("second", ["go", "grpc"], bayesian=4.0))
    matcher.upsert_worker(worker("third", ["go", "grpc"], bayesian=3.0))
    matcher.upsert_worker(worker("unrelated", ["excel"]))
    assert ids(matcher.upsert_project(project("p", ["go", "grpc"])).ranking) == ["first", "second"]

    changes = matcher.remove_worker("first")

    assert [(c.project_id, ids(c.ranking), c.changed) for c in changes] == [
        ("p", ["second", "third"], ("first", "second", "third"))
    ]
    assert matcher.workers == 3
    assert matcher.remove_worker("first") == []
    assert matcher.remove_worker("unrelated") == []


def test_a_removed_project_has_no_ranking_and_is_not_touched_again() -> None:
    matcher = Matcher()
    matcher.upsert_worker(worker("a", ["scala"]))
    matcher.upsert_project(project("p", ["scala"]))
    matcher.upsert_project(project("q", ["scala", "spark"]))
    matcher.remove_project("p")
    assert matcher.ranking("p") is None
    assert matcher.projects == 1
    changes = matcher.upsert_worker(worker("b", ["scala", "spark"]))
    assert [c.project_id for c in changes] == ["q"]
    assert [c.project_id for c in matcher.remove_worker("a")] == ["q"]
    matcher.remove_project("p")  # already gone: nothing to do


def test_top_k_is_respected_from_every_path() -> None:
    matcher = Matcher(top_k=3)
    matcher.upsert_project(project("p", ["swift"]))
    for i, stars in enumerate([2.0, 5.0, 3.0, 4.0, 1.0]):
        matcher.upsert_worker(worker(f"w{i}", ["swift"], bayesian=stars))
    assert ids(matcher.ranking("p")) == ["w1", "w3", "w2"]
    assert [m.rank for m in matcher.ranking("p") or ()] == [1, 2, 3]
    assert ids(matcher.upsert_project(project("p", ["swift"])).ranking) == ["w1", "w3", "w2"]


def _churn(matcher: Matcher, seed: int) -> dict[str, WorkerInput]:
    """A random sequence of adds, changes and removals; the workers left at the end."""
    pool, projects = synthetic_corpus(60, 6, seed=seed)
    rng = random.Random(seed)
    for p in projects:
        matcher.upsert_project(p)
    live: dict[str, WorkerInput] = {}
    for _ in range(150):
        choice = rng.random()
        if live and choice < 0.25:
            gone = rng.choice(sorted(live))
            matcher.remove_worker(gone)
            del live[gone]
        else:
            base = rng.choice(pool)
            text_from = rng.choice(pool)
            w = WorkerInput(base.worker_id, text_from.text, base.bayesian, base.availability)
            matcher.upsert_worker(w)
            live[w.worker_id] = w
    return live


def test_incremental_document_frequencies_and_cosines_match_a_recount() -> None:
    matcher = Matcher(fold_at=7)
    live = _churn(matcher, seed=3)
    n, df = matcher.document_frequencies()

    rows = vectorize([w.text for w in live.values()])
    expected_df = np.bincount(rows.indices, minlength=rows.shape[1])
    expected_idf = np.log((1 + len(live)) / (1 + expected_df)) + 1
    assert n == len(live) == matcher.workers
    assert np.array_equal(df, expected_df)
    np.testing.assert_allclose(matcher.idf(), expected_idf, rtol=0, atol=1e-12)

    query = project_text("Data pipeline", "airflow and spark on aws", ["python", "spark"])
    q = vectorize([query])
    columns = np.union1d(rows.indices, q.indices)
    workers_dense = rows[:, columns].toarray() * expected_idf[columns]
    query_dense = q[:, columns].toarray()[0] * expected_idf[columns]
    cosines = workers_dense @ query_dense
    cosines /= np.linalg.norm(workers_dense, axis=1) * np.linalg.norm(query_dense)
    expected = dict(zip(live, cosines.tolist(), strict=True))
    got = matcher.similarities(query)
    assert got.keys() == expected.keys()
    assert max(abs(got[w] - expected[w]) for w in expected) < 1e-9
    assert sum(c > MIN_TEXT for c in expected.values()) > 5  # the check had something to compare

    ranking = matcher.upsert_project(ProjectInput("fresh", query)).ranking
    assert ranking
    assert max(abs(m.text - expected[m.worker_id]) for m in ranking) < 1e-9


def test_folding_the_overlay_into_the_base_changes_no_score() -> None:
    always, never = Matcher(top_k=5, fold_at=0), Matcher(top_k=5, fold_at=10**9)
    assert _churn(always, seed=5) == _churn(never, seed=5)
    query = project_text("", "mobile app with payments", ["flutter", "stripe", "firebase"])
    assert always.similarities(query) == never.similarities(query)
    for p in synthetic_corpus(60, 6, seed=5)[1]:
        assert always.ranking(p.project_id) == never.ranking(p.project_id)
        assert always.ranking(p.project_id)


def test_load_ranks_as_upserting_one_by_one_does() -> None:
    workers, projects = synthetic_corpus(300, 25, seed=11)
    loaded, upserted = Matcher(top_k=8), Matcher(top_k=8)
    loaded.load(workers, projects)
    for w in workers:
        upserted.upsert_worker(w)
    for p in projects:
        upserted.upsert_project(p)
    assert (loaded.workers, loaded.projects) == (300, 25)
    for p in projects:
        a, b = loaded.ranking(p.project_id), upserted.ranking(p.project_id)
        assert a and b
        assert ids(a) == ids(b)
        assert [m.score for m in a] == pytest.approx([m.score for m in b], abs=1e-9)


def test_worker_updates_keep_every_ranking_equal_to_a_full_rerank() -> None:
    # Changing only ratings and availability leaves the idf as it was, so the kept top-K must be
    # exactly what ranking from scratch gives, spare candidates running out included.
    workers, projects = synthetic_corpus(400, 30, seed=13)
    matcher = Matcher(top_k=5, spare=2)
    matcher.load(workers, projects)
    rng = random.Random(13)
    current = {w.worker_id: w for w in workers}
    for _ in range(400):
        w = rng.choice(workers)
        stars = None if rng.random() < 0.2 else rng.choice([1.0, 2.5, 4.0, 5.0])
        availability = rng.choice(["available", "busy", "unavailable"])
        current[w.worker_id] = WorkerInput(w.worker_id, w.text, stars, availability)
        matcher.upsert_worker(current[w.worker_id])
    fresh = Matcher(top_k=5, spare=2)
    fresh.load(current.values(), projects)
    for p in projects:
        assert matcher.ranking(p.project_id) == fresh.ranking(p.project_id)


def test_empty_corpora_and_empty_texts_rank_nobody() -> None:
    matcher = Matcher()
    matcher.load([], [project("p", ["python"])])
    assert matcher.ranking("p") == ()
    matcher.upsert_worker(WorkerInput("blank", "", None, "available"))
    assert matcher.upsert_worker(worker("w", ["python"])) != []
    assert ids(matcher.ranking("p")) == ["w"]
    assert matcher.upsert_project(ProjectInput("q", "")).ranking == ()
    assert matcher.similarities("python") == {"blank": 0.0, "w": 1.0}
