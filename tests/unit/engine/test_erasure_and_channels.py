"""SPEC §1 (*_sent, channels), §4 (channels_30d, messages_30d, last_nps), §7 (feedback and
engagement_30d) and §9 (erasure): hand-written scenarios, each checked against the oracle and
against the SPEC facts it is about, stated here by hand (not read back from the engine)."""

from __future__ import annotations

from stream_app.engine import Unit
from stream_app.engine.events import Event
from tests.oracle import DAY, HOUR, MINUTE, format_instant, parse_instant
from tests.unit.engine.test_engine_properties import _ev, _order, check_against_oracle, engine_replay

T0 = "2024-03-01T10:00:00Z"


def at(plus: int) -> str:
    return format_instant(parse_instant(T0) + plus)


# ---------------------------------------------------------------- sends are not activity


def test_a_send_creates_a_bronze_customer_without_activity():
    doc = check_against_oracle([_ev("s1", T0, "email_sent", "ann")])
    rec = doc["customers"]["ann"]
    assert rec["last_activity_at"] is None and rec["clicks_30d"] == 0 and rec["channels_30d"] == []
    assert rec["events_total"] == 1 and rec["score"] == 0.0
    assert rec["messages_30d"]["email"] == {"sent": 1, "opened": 0, "clicked": 0}
    assert doc["tier_changes"] == [{"customer_id": "ann", "from_tier": None, "to_tier": "bronze",
                                    "score": 0.0, "at": T0, "reason": "event"}]
    assert doc["kpis"]["engagement_30d"]["active_customers"] == 0
    assert doc["kpis"]["engagement_30d"]["email_sent"] == 1


def test_a_send_moves_the_clock_but_not_last_activity_and_can_demote_at_its_instant():
    # 4 orders of 400 → S = 200 (platinum); S < 0.8 × 150 after 30·log2(200/120) ≈ 22.11 days,
    # between the day-22 midnight (S ≈ 121.4) and the next one: the send demotes at its instant
    events = [_order(f"o{i}", T0, "ann", 400) for i in range(4)]
    events.append(_ev("s1", at(22 * DAY + 10 * HOUR), "push_sent", "ann"))
    doc = check_against_oracle(events)
    rec = doc["customers"]["ann"]
    assert rec["last_activity_at"] == T0 and rec["as_of"] == at(22 * DAY + 10 * HOUR)
    assert doc["tier_changes"][-1]["at"] == at(22 * DAY + 10 * HOUR)
    assert (doc["tier_changes"][-1]["to_tier"], doc["tier_changes"][-1]["reason"]) == ("gold", "event")


def test_sends_do_not_rearm_churn_but_activity_does():
    events = [_order(f"o{i}", T0, "ann", 400) for i in range(2)]  # S = 100: gold
    events.append(_ev("s1", at(40 * DAY), "email_sent", "ann"))  # churn was raised at day 31
    events.append(_ev("s2", at(80 * DAY), "email_sent", "ann"))
    doc = check_against_oracle(events, as_of=at(80 * DAY))
    churn = [a for a in doc["alerts"] if a["type"] == "churn_risk"]
    assert len(churn) == 1  # once per spell; the sends did not re-arm it
    assert churn[0]["details"]["last_activity_at"] == T0
    events.append(_ev("c1", at(81 * DAY), "page_view", "ann"))  # activity re-arms
    events.append(_ev("s3", at(200 * DAY), "email_sent", "ann"))
    doc = check_against_oracle(events, as_of=at(200 * DAY))
    # still silver or higher 30 days after the page view? S(111 d) = 100·2^(-111/30) ≈ 7.7: the
    # sweep demoted it before, so only a customer still silver+ would alert: check the oracle agrees
    assert len([a for a in doc["alerts"] if a["type"] == "churn_risk"]) >= 1


# ---------------------------------------------------------------- channels


def test_channels_are_lower_cased_defaulted_by_type_and_unknown_is_other():
    events = [
        _ev("a", T0, "page_view", "ann", channel="WEB"),
        _ev("b", at(MINUTE), "page_view", "ann", channel=""),  # empty: page_view has no own channel
        _ev("c", at(2 * MINUTE), "email_open", "ann"),  # the type's own: email
        _ev("d", at(3 * MINUTE), "like", "ann"),  # social
        _ev("e", at(4 * MINUTE), "search", "ann", channel="Kiosk"),  # unknown → other
        _ev("f", at(5 * MINUTE), "search", "bob", channel="tv"),
        _ev("g", at(6 * MINUTE), "sms_sent", "bob", channel="sms"),  # a send is not activity
        _ev("h", at(7 * MINUTE), "page_view", "cat"),  # no channel at all
    ]
    doc = check_against_oracle(events)
    assert doc["customers"]["ann"]["channels_30d"] == ["email", "other", "social", "web"]
    assert doc["customers"]["bob"]["channels_30d"] == ["other"]
    assert doc["customers"]["cat"]["channels_30d"] == []
    e = doc["kpis"]["engagement_30d"]
    assert e["active_customers"] == 3
    assert e["customers_by_channel"] == {"web": 1, "app": 0, "store": 0, "email": 1, "sms": 0,
                                         "push": 0, "social": 1, "other": 2}
    assert e["omnichannel_customers"] == 1 and e["omnichannel_rate"] == 1 / 3


def test_channels_leave_the_30_day_window():
    events = [_ev("a", T0, "page_view", "ann", channel="app"),
              _ev("b", at(10 * DAY), "page_view", "ann", channel="web")]
    doc = check_against_oracle(events, as_of=at(35 * DAY))
    assert doc["customers"]["ann"]["channels_30d"] == ["web"]
    e = doc["kpis"]["engagement_30d"]
    assert e["omnichannel_customers"] == 0 and e["customers_by_channel"]["app"] == 0
    assert e["active_customers"] == 1


# ---------------------------------------------------------------- feedback and messages


def test_nps_csat_and_message_rates():
    events = [
        _ev("n1", T0, "survey_response", "ann", nps=10),
        _ev("n2", at(HOUR), "survey_response", "bob", nps=9),
        _ev("n3", at(2 * HOUR), "survey_response", "cat", nps=7),
        _ev("n4", at(3 * HOUR), "survey_response", "dan", nps=3),
        _ev("r1", at(4 * HOUR), "review", "ann", rating=5),
        _ev("r2", at(5 * HOUR), "review", "bob", rating=2),
        _ev("s1", at(6 * HOUR), "email_sent", "ann"),
        _ev("s2", at(6 * HOUR), "email_sent", "bob"),
        _ev("o1", at(7 * HOUR), "email_open", "ann"),
        _ev("k1", at(8 * HOUR), "email_click", "ann"),
        _ev("p1", at(8 * HOUR), "push_sent", "ann"),
    ]
    doc = check_against_oracle(events)
    k = doc["kpis"]
    assert (k["survey_responses"], k["promoters"], k["passives"], k["detractors"]) == (4, 2, 1, 1)
    assert k["nps"] == 100 * (2 - 1) / 4
    assert (k["reviews"], k["satisfied_reviews"], k["csat"], k["average_rating"]) == (2, 1, 0.5, 3.5)
    e = k["engagement_30d"]
    assert (e["email_sent"], e["email_opened"], e["email_clicked"]) == (2, 1, 1)
    assert e["email_open_rate"] == 0.5 and e["email_click_rate"] == 0.5
    assert e["push_open_rate"] == 0.0 and e["sms_click_rate"] is None
    assert doc["customers"]["ann"]["messages_30d"] == {
        "email": {"sent": 1, "opened": 1, "clicked": 1}, "push": {"sent": 1, "opened": 0},
        "sms": {"sent": 0, "clicked": 0}}


def test_last_nps_is_the_latest_response_and_the_later_one_on_a_tie():
    events = [_ev("a", at(HOUR), "survey_response", "ann", nps=4),
              _ev("b", T0, "survey_response", "ann", nps=9),  # late: older than a
              _ev("c", at(2 * HOUR), "survey_response", "bob", nps=1),
              _ev("d", at(2 * HOUR), "survey_response", "bob", nps=8)]  # same instant: later wins
    doc = check_against_oracle(events)
    assert doc["customers"]["ann"]["last_nps"] == 4
    assert doc["customers"]["bob"]["last_nps"] == 8


# ---------------------------------------------------------------- erasure (SPEC §9)


def _shop(cid: str, t: str) -> list[dict]:
    return [_order(f"{cid}-o1", t, cid, 100, channel="web"), _order(f"{cid}-o2", t, cid, 50, channel="app"),
            _ev(f"{cid}-r", t, "review", cid, rating=5), _ev(f"{cid}-s", t, "email_sent", cid)]


def test_erasing_a_known_customer_keeps_anonymous_aggregates():
    events = [*_shop("ann", T0), *_shop("bob", T0), _ev("x", at(HOUR), "customer_erased", "ann")]
    doc = check_against_oracle(events)
    before = check_against_oracle(events[:-1])
    assert "ann" not in doc["customers"] and "bob" in doc["customers"]
    assert doc["counts"]["erased"] == 1 and doc["counts"]["applied"] == 9
    k, b = doc["kpis"], before["kpis"]
    for same in ("orders", "guest_orders", "revenue", "reviews", "satisfied_reviews"):
        assert k[same] == b[same], same
    assert (k["identified_orders"], k["customers"], k["repeat_customers"]) == (2, 1, 1)
    assert (b["identified_orders"], b["customers"], b["repeat_customers"]) == (4, 2, 2)
    e, eb = k["engagement_30d"], b["engagement_30d"]
    assert e["email_sent"] == eb["email_sent"] == 2
    assert (e["active_customers"], e["omnichannel_customers"]) == (1, 1)
    assert (eb["active_customers"], eb["omnichannel_customers"]) == (2, 2)
    assert e["customers_by_channel"]["web"] == 1 and eb["customers_by_channel"]["web"] == 2
    # no tier change or alert is published for it at the erasure
    assert [tc for tc in doc["tier_changes"] if tc["customer_id"] == "ann"] == \
        [tc for tc in before["tier_changes"] if tc["customer_id"] == "ann"]


def test_erasing_an_unknown_customer_changes_nothing_but_the_counts_and_the_watermark():
    events = [*_shop("bob", T0)]
    erased = [*events, _ev("x", at(2 * DAY), "customer_erased", "nobody")]
    doc, before = check_against_oracle(erased), check_against_oracle(events)
    assert doc["counts"] == {**before["counts"], "applied": 5, "erased": 1}
    assert doc["customers"].keys() == before["customers"].keys()
    assert doc["as_of"] == at(2 * DAY)  # it moved the watermark


def test_a_duplicated_erasure_is_a_duplicate():
    events = [*_shop("ann", T0), _ev("x", at(HOUR), "customer_erased", "ann"),
              _ev("x", at(HOUR), "customer_erased", "ann")]
    doc = check_against_oracle(events)
    assert doc["counts"]["erased"] == 1 and doc["counts"]["duplicates"] == 1


def test_an_erasure_drops_the_pending_cart_timer():
    events = [_ev("c", T0, "checkout_started", "ann", cart_id="k"),
              _ev("x", at(10 * MINUTE), "customer_erased", "ann"),
              _ev("z", at(3 * HOUR), "page_view", "bob")]  # past the deadline: the timer would fire
    doc = check_against_oracle(events)
    assert [a for a in doc["alerts"] if a["type"] == "abandoned_cart"] == []
    without = check_against_oracle([events[0], events[2]])
    assert [a["type"] for a in without["alerts"]] == ["abandoned_cart"]  # the scenario can fail


def test_a_late_event_older_than_the_erasure_starts_a_new_customer():
    events = [*_shop("ann", T0), _ev("x", at(5 * DAY), "customer_erased", "ann"),
              _ev("late", at(-2 * DAY), "like", "ann")]
    doc = check_against_oracle(events)
    rec = doc["customers"]["ann"]
    assert rec["events_total"] == 1 and rec["orders_total"] == 0 and rec["points"] == 0
    assert rec["last_activity_at"] == at(-2 * DAY)
    ann_changes = [tc for tc in doc["tier_changes"] if tc["customer_id"] == "ann"]
    assert ann_changes[-1]["from_tier"] is None  # a first tier change again


def test_an_erased_customer_is_gone_from_the_unit_and_its_kpi_partial():
    u = Unit()
    t = parse_instant(T0)
    u.offer(Event("o", "order_placed", "orders", "ann", t, channel="web", order_id="o", amount=5.0))
    u.offer(Event("x", "customer_erased", "privacy", "ann", t + HOUR))
    assert "ann" not in u.customers and u.record("ann") is None
    assert u.kpis.latest == {} and u.kpis.active == {} and u.kpis.by_channel["web"] == {}
    out = u.drain()
    assert (out.erased, out.erased_tiers, out.changed) == (["ann"], [0], set())
    assert engine_replay([])["counts"]["erased"] == 0
