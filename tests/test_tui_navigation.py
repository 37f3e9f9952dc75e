"""Where the stepper's keys send the cursor, checked against brute-force scans of the same Trace."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic import synthetic_result

from tokstep.tui.formatting import bar, clip, number, probability
from tokstep.tui.screens.navigation import (
    Marks,
    SurpriseRule,
    TokenSearch,
    mask_boundaries,
    parse_position,
    parse_surprise_rule,
    position_predicting,
)


@pytest.fixture(scope="module")
def result():
    return synthetic_result(600, seed=3)


def test_position_predicting_maps_a_token_to_the_position_whose_target_it_is():
    # GIVEN 10 positions (11 tokens) THEN token i is predicted at t = i - 1, token 0 maps to t = 0
    assert [position_predicting(i, 10) for i in (0, 1, 5, 10, 99)] == [0, 0, 4, 9, 9]


def test_surprise_flags_match_a_loop_over_positions(result):
    trace = result.trace
    rule = SurpriseRule(rank_above=3, prob_below=0.05)
    expected = [
        bool(trace.supervised[t] and (trace.rank[t] > 3 or math.exp(float(trace.logprob[t])) < 0.05))
        for t in range(len(trace))
    ]
    assert rule.flags(trace).tolist() == expected
    assert any(expected) and not all(expected)


def test_marks_next_and_previous_agree_with_a_linear_scan(result):
    flags = SurpriseRule(rank_above=2, prob_below=0.0).flags(result.trace)
    marks = Marks(flags)
    hits = np.flatnonzero(flags).tolist()
    for t in range(0, len(flags), 7):
        assert marks.next_after(t) == next((h for h in hits if h > t), None)
        assert marks.previous_before(t) == next((h for h in reversed(hits) if h < t), None)


def test_mask_boundaries_are_where_counted_changes(result):
    trace = result.trace
    flags = mask_boundaries(trace)
    changes = [t for t in range(1, len(trace)) if trace.supervised[t] != trace.supervised[t - 1]]
    assert np.flatnonzero(flags).tolist() == changes
    assert changes  # the synthetic sample has a masked prompt then an answer


def test_parse_position_accepts_index_negative_and_percent():
    assert parse_position("42", 100) == 42
    assert parse_position("-1", 100) == 99
    assert parse_position("50%", 101) == 50
    for bad in ("", "abc", "100", "-101"):
        with pytest.raises(ValueError):
            parse_position(bad, 100)


def test_parse_surprise_rule_rejects_nonsense():
    assert parse_surprise_rule(" 5 ", "0.2") == SurpriseRule(5, 0.2)
    for rank, prob in (("x", "0.1"), ("3", "p"), ("-1", "0.1"), ("3", "1.5")):
        with pytest.raises(ValueError):
            parse_surprise_rule(rank, prob)


def test_search_finds_text_spanning_tokens_and_wraps(result):
    ids = result.sample.input_ids
    search = TokenSearch(result.texts, ids)
    # GIVEN the decoded text of tokens 200..202 as the query
    query = "".join(result.texts.text(int(i)) for i in ids[200:203])
    found = search.find(query.upper(), after_token=150)
    decoded_from = "".join(result.texts.text(int(i)) for i in ids[found:]).casefold()
    assert found is not None and found > 150 and decoded_from.startswith(query.casefold())
    # WHEN searching after the last token THEN it wraps round to the first occurrence
    first = search.find(query, after_token=len(ids) - 1)
    assert first is not None and first <= found
    assert search.find("no such text anywhere", after_token=0) is None


def test_search_by_token_id(result):
    ids = result.sample.input_ids
    token = int(ids[321])
    found = TokenSearch(result.texts, ids).find(f"#{token}", after_token=300)
    assert found == next(i for i in range(301, len(ids)) if ids[i] == token)


def test_numbers_never_show_nan_as_a_number():
    assert number(float("nan")) == "NaN/inf" and number(float("inf")) == "NaN/inf"
    assert number(None) == "—" and number(1.23456, 2) == "1.23"
    assert probability(1e-7) == "1.0e-07" and probability(0.5) == "0.5000"
    assert bar(0.5, 4) == "██  " and bar(float("nan"), 3) == "   "
    assert clip("abcdef", 4) == "abc…" and clip("ab", 4) == "ab"
