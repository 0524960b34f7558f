"""`rvs eval people`: its measures (fast), and the clustering of real LFW people (slow)."""

from __future__ import annotations

import pytest

from rvs.cli.evaluation.measures import grouping

from conftest import lfw_people


def test_grouping_counts_pairs_and_items_with_loose_items_on_their_own() -> None:
    # Truth: a a a b b. Predicted: {a a b} together, one a loose, one b loose.
    g = grouping(["x", "x", "", "x", ""], ["a", "a", "a", "b", "b"])
    # Pairs predicted together: 3 (1 right); true pairs: 3 (a-a) + 1 (b-b) = 4.
    assert (g.pairwise_precision, g.pairwise_recall) == pytest.approx((1 / 3, 1 / 4))
    # BCubed per item: precision 2/3, 2/3, 1, 1/3, 1; recall 2/3, 2/3, 1/3, 1/2, 1/2.
    assert g.bcubed_precision == pytest.approx((2 / 3 + 2 / 3 + 1 + 1 / 3 + 1) / 5)
    assert g.bcubed_recall == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 / 2 + 1 / 2) / 5)
    perfect = grouping(["p", "p", "q"], ["a", "a", "b"])
    assert (perfect.pairwise_f1, perfect.bcubed_f1) == (1.0, 1.0)


@pytest.mark.slow
def test_sface_groups_30_lfw_people_precisely() -> None:
    """30 LFW people with >= 4 photos under the default rules: measured pairwise recall 0.93 (batch);
    the floors leave room for another CPU's rounding, not for a merged pair of people."""
    from rvs.cli.evaluation import people
    from rvs.core.config import ModelSettings
    from rvs.core.faces.pipeline import FacePipeline

    pipeline = FacePipeline(ModelSettings(model="sface", detector="yunet"))
    pipeline.load()
    result = people.evaluate(lfw_people(), pipeline, 30)
    assert result.people == 30 and result.photos >= 120
    for run in (result.batch, result.incremental):
        assert run.grouping.pairwise_precision >= 0.97
        assert run.grouping.pairwise_recall >= 0.85
