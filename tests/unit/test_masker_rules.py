"""Specifications of the masking rules, one behaviour per test."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.masker.rules import (
    MaskPolicy,
    MaskResult,
    SessionMaskState,
    mask_batch,
    mask_text,
)
from services.shared.site_settings import ConsentMode, SiteSettings

SECRET = "S3cr3tValue"


def el(node_id: int, tag: str, attrs: dict[str, Any] | None = None, *kids: Any) -> dict[str, Any]:
    return {
        "type": 2,
        "id": node_id,
        "tagName": tag,
        "attributes": attrs or {},
        "childNodes": list(kids),
    }


def text(node_id: int, content: str, **extra: Any) -> dict[str, Any]:
    return {"type": 3, "id": node_id, "textContent": content, **extra}


def snapshot(*body_children: dict[str, Any]) -> dict[str, Any]:
    """Document 1 > html 2 > body 3 > children."""
    body = el(3, "body", {}, *body_children)
    root = {"type": 0, "id": 1, "childNodes": [el(2, "html", {}, body)]}
    data = {"node": root, "initialOffset": {"top": 0, "left": 0}}
    return {"type": 2, "timestamp": 1, "data": data}


def typing(node_id: int, value: str, **extra: Any) -> dict[str, Any]:
    return {"type": 3, "timestamp": 2, "data": {"source": 5, "id": node_id, "text": value, **extra}}


def mutation(**parts: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"source": 0, "texts": [], "attributes": [], "removes": [], "adds": []}
    data.update(parts)
    return {"type": 3, "timestamp": 3, "data": data}


def custom(tag: str, payload: Any) -> dict[str, Any]:
    return {"type": 5, "timestamp": 4, "data": {"tag": tag, "payload": payload}}


def consent_event(granted: bool) -> dict[str, Any]:
    return custom("replaypipe.consent", {"granted": granted})


def site(**overrides: Any) -> SiteSettings:
    return SiteSettings(site_id="t", **overrides)


def run(
    events: list[dict[str, Any]],
    settings: SiteSettings | None = None,
    consent: bool | None = None,
    state: SessionMaskState | None = None,
    **kwargs: Any,
) -> MaskResult:
    return mask_batch(events, state or SessionMaskState(), settings or site(), consent, **kwargs)


def dumped(result: MaskResult) -> str:
    return orjson.dumps(result.events).decode()


def node_by_id(event: dict[str, Any], node_id: int) -> dict[str, Any]:
    stack = [event["data"]["node"]]
    while stack:
        node = stack.pop()
        if node.get("id") == node_id:
            return node  # type: ignore[no-any-return]
        stack.extend(node.get("childNodes", []))
    raise KeyError(node_id)


RECORDING = site(record_inputs=True)


# --- always-masked fields --------------------------------------------------------


def test_password_field_value_is_masked_even_when_inputs_are_recorded() -> None:
    result = run(
        [snapshot(el(4, "input", {"type": "password", "value": SECRET})), typing(4, SECRET)],
        RECORDING,
    )
    assert SECRET not in dumped(result)
    assert result.events[1]["data"]["text"] == "*" * len(SECRET)
    assert result.counts["sensitive_field"] == 2


def test_password_typed_after_type_flip_is_masked() -> None:
    state = SessionMaskState()
    before = run(
        [snapshot(el(4, "input", {"type": "text"})), typing(4, "visible")], RECORDING, state=state
    )
    after = run(
        [mutation(attributes=[{"id": 4, "attributes": {"type": "password"}}]), typing(4, SECRET)],
        RECORDING,
        state=state,
    )
    assert before.events[1]["data"]["text"] == "visible"
    assert SECRET not in dumped(after)


def test_password_stays_masked_after_show_password_flips_type_back_to_text() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "input", {"type": "password"}))], RECORDING, state=state)
    result = run(
        [mutation(attributes=[{"id": 4, "attributes": {"type": "text"}}]), typing(4, SECRET)],
        RECORDING,
        state=state,
    )
    assert SECRET not in dumped(result)


def test_a_password_shown_as_text_stays_masked_in_the_next_full_snapshot() -> None:
    # rrweb keeps node ids across the full snapshots of one page (a checkout).
    state = SessionMaskState()
    run([snapshot(el(4, "input", {"type": "password"}))], RECORDING, state=state)
    run([mutation(attributes=[{"id": 4, "attributes": {"type": "text"}}])], RECORDING, state=state)
    checkout = snapshot(
        el(4, "input", {"type": "text", "value": SECRET}),
        el(6, "input", {"type": "text", "value": "visible"}),
    )
    result = run([checkout, typing(4, SECRET), typing(6, "also visible")], RECORDING, state=state)
    assert SECRET not in dumped(result)
    assert "visible" in dumped(result) and "also visible" in dumped(result)


def test_a_mask_added_later_covers_existing_descendants_from_the_next_checkout() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "div", {}, text(5, "public")))], RECORDING, state=state)
    run(
        [mutation(attributes=[{"id": 4, "attributes": {"class": "rr-mask"}}])],
        RECORDING,
        state=state,
    )
    checkout = snapshot(el(4, "div", {"class": "rr-mask"}, text(5, SECRET)))
    result = run([checkout, mutation(texts=[{"id": 5, "value": SECRET}])], RECORDING, state=state)
    assert SECRET not in dumped(result)


def test_a_carried_sensitive_id_only_masks_form_fields() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "input", {"type": "password"}))], RECORDING, state=state)
    new_page = snapshot(el(4, "p", {"title": "Opening hours"}, text(5, "Mon-Fri 9-17")))
    result = run([new_page], RECORDING, state=state)
    assert "Mon-Fri 9-17" in dumped(result) and "Opening hours" in dumped(result)


def test_moved_password_field_re_added_as_text_stays_masked() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "input", {"type": "password"}), el(5, "div"))], RECORDING, state=state)
    moved = mutation(
        removes=[{"parentId": 3, "id": 4}],
        adds=[{"parentId": 5, "nextId": None, "node": el(4, "input", {"type": "text"})}],
    )
    result = run([moved, typing(4, SECRET)], RECORDING, state=state)
    assert SECRET not in dumped(result)


@pytest.mark.parametrize(
    "autocomplete",
    [
        "cc-number",
        "cc-csc",
        "cc-exp",
        "cc-exp-month",
        "cc-exp-year",
        "cc-name",
        "one-time-code",
        "current-password",
        "new-password",
        "section-pay billing cc-number",
    ],
)
def test_card_otp_and_password_autocomplete_fields_are_always_masked(autocomplete: str) -> None:
    field = el(4, "input", {"type": "text", "autocomplete": autocomplete, "value": SECRET})
    result = run([snapshot(field), typing(4, SECRET)], RECORDING)
    assert SECRET not in dumped(result)


@pytest.mark.parametrize(
    "attrs",
    [
        {"name": "card_number"},
        {"name": "cvv2"},
        {"id": "userCVC"},
        {"name": "iban"},
        {"name": "ssn"},
        {"id": "credit-card"},
        {"name": "user[password]"},
        {"name": "csrf_token"},
    ],
)
def test_fields_named_like_sensitive_names_are_always_masked(attrs: dict[str, str]) -> None:
    result = run(
        [snapshot(el(4, "input", {"type": "text", **attrs})), typing(4, SECRET)], RECORDING
    )
    assert SECRET not in dumped(result)


def test_short_sensitive_names_match_whole_words_only() -> None:
    result = run(
        [snapshot(el(4, "input", {"name": "shipping_method"})), typing(4, "express")], RECORDING
    )
    assert result.events[1]["data"]["text"] == "express"


def test_sensitive_names_list_can_be_overridden() -> None:
    events = [snapshot(el(4, "input", {"name": "loyalty_no"})), typing(4, SECRET)]
    result = run(events, RECORDING, sensitive_names=("loyalty",))
    assert SECRET not in dumped(result)


# --- record_inputs -------------------------------------------------------------------


def test_typed_values_are_masked_by_default() -> None:
    result = run(
        [snapshot(el(4, "input", {"type": "text", "value": "abc def"})), typing(4, "hello world")]
    )
    assert result.events[1]["data"]["text"] == "***** *****"
    assert node_by_id(result.events[0], 4)["attributes"]["value"] == "*** ***"
    assert result.counts["input"] == 2


def test_typed_values_are_kept_when_site_records_inputs_but_pii_is_masked() -> None:
    result = run(
        [snapshot(el(4, "input", {"type": "text"})), typing(4, "hi ann@example.com")], RECORDING
    )
    assert result.events[1]["data"]["text"] == "hi " + "*" * len("ann@example.com")


def test_checkbox_checked_state_is_kept() -> None:
    result = run([snapshot(el(4, "input", {"type": "checkbox"})), typing(4, "on", isChecked=True)])
    assert result.events[1]["data"]["isChecked"] is True


def test_textarea_content_is_masked_by_default() -> None:
    result = run([snapshot(el(4, "textarea", {}, text(5, SECRET))), typing(4, SECRET)])
    assert SECRET not in dumped(result)


def test_select_option_texts_and_values_are_masked_when_select_is_masked() -> None:
    select = el(
        4, "select", {"name": "size"}, el(5, "option", {"value": SECRET}, text(6, SECRET + " size"))
    )
    result = run([snapshot(select), typing(4, SECRET)])
    assert SECRET not in dumped(result)
    assert node_by_id(result.events[0], 6)["textContent"].endswith(" ****")


def test_select_options_are_kept_when_inputs_are_recorded() -> None:
    select = el(4, "select", {}, el(5, "option", {"value": "m"}, text(6, "Medium")))
    result = run([snapshot(select)], RECORDING)
    assert node_by_id(result.events[0], 6)["textContent"] == "Medium"


def test_contenteditable_text_changes_are_masked_by_default() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "div", {"contenteditable": "true"}, text(5, "draft")))], state=state)
    result = run([mutation(texts=[{"id": 5, "value": SECRET}])], state=state)
    assert SECRET not in dumped(result)


# --- page marks and site selectors ------------------------------------------------------


def test_rr_mask_text_is_masked_keeping_length_and_spaces() -> None:
    result = run([snapshot(el(4, "div", {"class": "rr-mask"}, text(5, " Ann  Smith\n")))])
    assert node_by_id(result.events[0], 5)["textContent"] == " ***  *****\n"


def test_text_mutation_inside_masked_subtree_is_masked() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "div", {"class": "rr-mask"}, el(5, "b", {}, text(6, "x"))))], state=state)
    result = run([mutation(texts=[{"id": 6, "value": SECRET}])], state=state)
    assert SECRET not in dumped(result)


def test_nodes_added_under_masked_element_inherit_the_mask() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "div", {"data-recording-ignore": "mask"}))], state=state)
    added = el(7, "p", {"title": SECRET}, text(8, SECRET))
    result = run([mutation(adds=[{"parentId": 4, "nextId": None, "node": added}])], state=state)
    assert SECRET not in dumped(result)


def test_text_attributes_inside_masked_subtree_are_masked() -> None:
    attrs = {
        "placeholder": SECRET,
        "title": SECRET,
        "aria-label": SECRET,
        "data-user": SECRET,
        "class": "field",
    }
    result = run([snapshot(el(4, "div", {"class": "rr-mask"}, el(5, "input", attrs)))], RECORDING)
    assert SECRET not in dumped(result)
    assert node_by_id(result.events[0], 5)["attributes"]["class"] == "field"


def test_rr_block_subtree_becomes_an_empty_placeholder_keeping_its_size() -> None:
    blocked = el(
        4,
        "div",
        {"class": "rr-block", "rr_width": "300px", "rr_height": "40px", "title": SECRET},
        text(5, SECRET),
    )
    result = run([snapshot(blocked)])
    placeholder = node_by_id(result.events[0], 4)
    assert placeholder["childNodes"] == []
    assert placeholder["attributes"] == {
        "class": "rr-block",
        "rr_width": "300px",
        "rr_height": "40px",
    }
    assert result.counts["block"] == 1


def test_events_inside_blocked_subtree_are_dropped() -> None:
    state = SessionMaskState()
    page = el(4, "div", {"data-recording-ignore": "events"}, el(5, "input"), text(6, "x"))
    run([snapshot(page)], state=state)
    events = [
        typing(5, SECRET),
        mutation(
            texts=[{"id": 6, "value": SECRET}],
            attributes=[{"id": 5, "attributes": {"value": SECRET}}],
            adds=[{"parentId": 4, "nextId": None, "node": text(9, SECRET)}],
            removes=[{"parentId": 4, "id": 6}],
        ),
    ]
    result = run(events, state=state)
    assert SECRET not in dumped(result)
    assert result.dropped == 1
    assert result.events[0]["data"]["adds"] == []
    assert result.events[0]["data"]["removes"] == []


def test_mouse_interaction_on_blocked_element_is_kept() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "div", {"class": "rr-block"}))], state=state)
    click = {"type": 3, "timestamp": 5, "data": {"source": 2, "type": 2, "id": 4, "x": 1, "y": 2}}
    assert run([click], state=state).events == [click]


def test_rr_ignore_input_events_are_dropped_and_value_masked() -> None:
    result = run(
        [snapshot(el(4, "input", {"class": "rr-ignore", "value": SECRET})), typing(4, SECRET)],
        RECORDING,
    )
    assert SECRET not in dumped(result)
    assert len(result.events) == 1
    assert result.counts["ignore"] == 2


@pytest.mark.parametrize(
    ("setting", "attrs"),
    [
        ({"mask_text_selectors": ("#profile",)}, {"id": "profile"}),
        ({"mask_text_selectors": (".pii",)}, {"class": "card pii"}),
        ({"mask_text_selectors": ("[data-private]",)}, {"data-private": ""}),
        ({"mask_text_selectors": ("div[data-kind=user]",)}, {"data-kind": "user"}),
        ({"block_selectors": (".ads, #chat",)}, {"id": "chat"}),
    ],
)
def test_site_selectors_hide_matching_subtrees(
    setting: dict[str, Any], attrs: dict[str, str]
) -> None:
    result = run([snapshot(el(4, "div", attrs, text(5, SECRET)))], site(**setting))
    assert SECRET not in dumped(result)


def test_ignore_input_selector_drops_input_events() -> None:
    settings = site(record_inputs=True, ignore_input_selectors=("input.search",))
    result = run([snapshot(el(4, "input", {"class": "search"})), typing(4, SECRET)], settings)
    assert len(result.events) == 1


def test_descendant_selector_masks_only_inside_the_ancestor() -> None:
    settings = site(mask_text_selectors=("form.checkout span",))
    inner = el(5, "div", {}, el(6, "span", {}, text(7, SECRET)))
    page = [el(4, "form", {"class": "checkout"}, inner), el(8, "span", {}, text(9, "public"))]
    result = run([snapshot(*page)], settings)
    assert SECRET not in dumped(result)
    assert node_by_id(result.events[0], 9)["textContent"] == "public"


def test_descendant_selector_applies_to_nodes_added_later() -> None:
    state = SessionMaskState()
    settings = site(mask_text_selectors=("form.checkout span",))
    run([snapshot(el(4, "form", {"class": "checkout"}))], settings, state=state)
    added = el(6, "span", {}, text(7, SECRET))
    result = run(
        [mutation(adds=[{"parentId": 4, "nextId": None, "node": added}])], settings, state=state
    )
    assert SECRET not in dumped(result)


def test_mask_class_added_later_masks_following_inputs() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "input"))], RECORDING, state=state)
    result = run(
        [mutation(attributes=[{"id": 4, "attributes": {"class": "x rr-mask"}}]), typing(4, SECRET)],
        RECORDING,
        state=state,
    )
    assert SECRET not in dumped(result)


def test_selector_matching_attribute_added_later_masks_following_inputs() -> None:
    state = SessionMaskState()
    settings = site(record_inputs=True, mask_text_selectors=("input.private",))
    run([snapshot(el(4, "input"))], settings, state=state)
    result = run(
        [mutation(attributes=[{"id": 4, "attributes": {"class": "private"}}]), typing(4, SECRET)],
        settings,
        state=state,
    )
    assert SECRET not in dumped(result)


def test_unparseable_selector_masks_everything_and_is_reported() -> None:
    settings = site(mask_text_selectors=("div >> !!",))
    assert MaskPolicy.from_site(settings).problems
    result = run([snapshot(el(4, "p", {}, text(5, SECRET)))], settings)
    assert SECRET not in dumped(result)


def test_shadow_root_and_iframe_content_inherit_marks() -> None:
    shadow = el(5, "span", {}, text(6, SECRET))
    shadow["isShadow"] = True
    iframe_doc = {"type": 0, "id": 8, "childNodes": [el(9, "body", {}, text(10, SECRET))]}
    page = el(4, "div", {"class": "rr-mask"}, shadow, el(7, "iframe", {}, iframe_doc))
    result = run([snapshot(page)])
    assert SECRET not in dumped(result)


def test_iframe_attached_later_under_blocked_iframe_is_dropped() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "iframe", {"class": "rr-block"}))], state=state)
    doc = {"type": 0, "id": 8, "childNodes": [text(9, SECRET)]}
    result = run(
        [mutation(adds=[{"parentId": 4, "nextId": None, "node": doc}], isAttachIframe=True)],
        state=state,
    )
    assert SECRET not in dumped(result)


def test_style_text_is_kept_inside_masked_subtree() -> None:
    css = "input[type=password]{width:20em}"
    page = el(4, "div", {"class": "rr-mask"}, el(5, "style", {}, text(6, css, isStyle=True)))
    state = SessionMaskState()
    result = run([snapshot(page)], state=state)
    assert node_by_id(result.events[0], 6)["textContent"] == css
    later = run([mutation(texts=[{"id": 6, "value": css + ".a{}"}])], state=state)
    assert later.events[0]["data"]["texts"][0]["value"] == css + ".a{}"


def test_css_text_attribute_is_not_scrubbed() -> None:
    css = ".password{color:red} a[href*='token=1']{}"
    result = run([snapshot(el(4, "link", {"rel": "stylesheet", "_cssText": css}))])
    assert node_by_id(result.events[0], 4)["attributes"]["_cssText"] == css


def test_script_text_is_masked_unless_it_is_rrwebs_placeholder() -> None:
    page = [
        el(4, "script", {}, text(5, 'window.user={"email":"x"}')),
        el(6, "script", {}, text(7, "SCRIPT_PLACEHOLDER")),
    ]
    result = run([snapshot(*page)])
    assert "email" not in node_by_id(result.events[0], 5)["textContent"]
    assert node_by_id(result.events[0], 7)["textContent"] == "SCRIPT_PLACEHOLDER"


# --- unknown nodes ----------------------------------------------------------------------


def test_input_on_unknown_node_is_masked() -> None:
    result = run([typing(42, SECRET)], RECORDING)
    assert SECRET not in dumped(result)
    assert result.counts["unknown_node"] == 1


def test_text_mutation_on_unknown_node_is_masked() -> None:
    result = run([mutation(texts=[{"id": 42, "value": SECRET}])], RECORDING)
    assert SECRET not in dumped(result)


def test_nodes_added_under_unknown_parent_are_masked() -> None:
    added = el(50, "p", {"title": SECRET}, text(51, SECRET))
    result = run([mutation(adds=[{"parentId": 42, "nextId": None, "node": added}])], RECORDING)
    assert SECRET not in dumped(result)


# --- PII and URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pii",
    [
        "ann.smith+x@mail.example.com",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "378282246310005",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
    ],
)
def test_pii_in_visible_text_is_masked_to_the_same_length(pii: str) -> None:
    result = run([snapshot(el(4, "p", {}, text(5, f"contact: {pii}.")))])
    content = node_by_id(result.events[0], 5)["textContent"]
    assert pii not in content
    assert content.startswith("contact: ") and content.endswith(".")
    assert len(content) == len(f"contact: {pii}.")


def test_numbers_that_fail_the_checksums_are_kept() -> None:
    sample = "order 4111 1111 1111 1112 ref DE00 3704 0044 0532 0130 00"
    result = run([snapshot(el(4, "p", {}, text(5, sample)))])
    assert node_by_id(result.events[0], 5)["textContent"] == sample


def test_meta_href_query_token_is_scrubbed() -> None:
    meta = {
        "type": 4,
        "timestamp": 1,
        "data": {"href": "https://a.example/r?step=2&token=abc123#x", "width": 1, "height": 1},
    }
    result = run([meta])
    assert result.events[0]["data"]["href"] == "https://a.example/r?step=2&token=******#x"


def test_url_attributes_have_configured_params_scrubbed() -> None:
    link = el(4, "a", {"href": "/reset?reset_token=abc&user%5Bemail%5D=a%40b.io&page=1"})
    result = run([snapshot(link)], site(scrub_query_params=("token", "email")))
    href = node_by_id(result.events[0], 4)["attributes"]["href"]
    assert href == "/reset?reset_token=***&user%5Bemail%5D=********&page=1"


def test_data_uri_images_are_not_touched() -> None:
    src = "data:image/png;base64,iVBORw0KGgo4111111111111111=="
    result = run([snapshot(el(4, "img", {"src": src}))])
    assert node_by_id(result.events[0], 4)["attributes"]["src"] == src


def test_custom_event_payload_pii_is_masked() -> None:
    result = run([custom("signup", {"user": {"email": "ann@example.com"}, "n": [1, "ok"]})])
    assert "ann@example.com" not in dumped(result)
    assert result.events[0]["data"]["payload"]["n"] == [1, "ok"]


def test_console_plugin_payload_pii_is_masked() -> None:
    log = {
        "type": 6,
        "timestamp": 1,
        "data": {
            "plugin": "rrweb/console@1",
            "payload": {"level": "log", "trace": [], "payload": ['"card 4111111111111111"']},
        },
    }
    result = run([log])
    assert "4111111111111111" not in dumped(result)


def test_console_log_incremental_payload_pii_is_masked() -> None:
    log = {
        "type": 3,
        "timestamp": 1,
        "data": {"source": 11, "level": "warn", "payload": ["mail ann@example.com"]},
    }
    assert "ann@example.com" not in dumped(run([log]))


def test_unknown_plugin_payload_strings_are_masked() -> None:
    network = {
        "type": 6,
        "timestamp": 1,
        "data": {"plugin": "rrweb/network@1", "payload": {"body": SECRET, "status": 200}},
    }
    result = run([network])
    assert SECRET not in dumped(result)
    assert result.events[0]["data"]["plugin"] == "rrweb/network@1"
    assert result.events[0]["data"]["payload"]["status"] == 200


def test_unknown_event_type_strings_are_masked() -> None:
    result = run([{"type": 42, "timestamp": 1, "data": {"note": SECRET}}])
    assert SECRET not in dumped(result)
    assert len(result.events) == 1


def test_mouse_moves_and_scrolls_pass_through_untouched() -> None:
    moves = {
        "type": 3,
        "timestamp": 1,
        "data": {"source": 1, "positions": [{"x": 1, "y": 2, "id": 4, "timeOffset": 0}]},
    }
    scroll = {"type": 3, "timestamp": 2, "data": {"source": 3, "id": 1, "x": 0, "y": 9}}
    result = run([moves, scroll])
    assert result.events[0] is moves and result.events[1] is scroll
    assert not result.counts


# --- consent ----------------------------------------------------------------------------


def consent_site(mode: ConsentMode) -> SiteSettings:
    return site(consent_mode=mode, record_inputs=True)


def test_consent_required_drops_everything_until_consent() -> None:
    result = run(
        [snapshot(el(4, "p", {}, text(5, SECRET))), typing(4, SECRET)], consent_site("required")
    )
    assert result.events == []
    assert result.dropped == 2
    assert result.counts["consent_drop"] == 2
    assert result.consent_state == "pending"


def test_consent_required_keeps_batches_sent_with_consent() -> None:
    result = run([snapshot(el(4, "p", {}, text(5, "hi")))], consent_site("required"), True)
    assert len(result.events) == 1
    assert result.consent_state == "granted"


def test_consent_event_switches_consent_at_its_position() -> None:
    state = SessionMaskState()
    events = [
        snapshot(el(4, "input")),
        typing(4, "before"),
        consent_event(True),
        typing(4, "after"),
    ]
    result = run(events, consent_site("required"), state=state)
    assert [e["type"] for e in result.events] == [5, 3]
    assert result.events[1]["data"]["text"] == "after"


def test_masking_stays_correct_after_consent_arrives_late() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "input", {"type": "password"}))], consent_site("required"), state=state)
    result = run([consent_event(True), typing(4, SECRET)], consent_site("required"), state=state)
    assert SECRET not in dumped(result)


def test_consent_withdrawal_returns_to_dropping() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "input"))], consent_site("required"), True, state=state)
    result = run(
        [typing(4, "a"), consent_event(False), typing(4, "b")],
        consent_site("required"),
        state=state,
    )
    assert [e["data"].get("text") for e in result.events] == ["a", None]
    assert result.consent_state == "withdrawn"


def test_envelope_consent_applies_after_a_batch_with_consent_events() -> None:
    state = SessionMaskState()
    result = run(
        [typing(4, "early"), consent_event(False)], consent_site("required"), True, state=state
    )
    assert len(result.events) == 1  # only the consent event: "early" came before it
    assert state.consent == "granted"


def test_mask_until_consent_masks_text_and_inputs_before_consent() -> None:
    state = SessionMaskState()
    before = run(
        [snapshot(el(4, "p", {"title": "Hi Ann"}, text(5, "Hi Ann"))), typing(4, "x")],
        consent_site("mask_until_consent"),
        state=state,
    )
    assert "Ann" not in dumped(before)
    assert len(before.events) == 2
    after = run(
        [mutation(texts=[{"id": 5, "value": "Hi Bob"}])],
        consent_site("mask_until_consent"),
        True,
        state=state,
    )
    assert after.events[0]["data"]["texts"][0]["value"] == "Hi Bob"


def test_consent_mode_none_ignores_consent_signals() -> None:
    result = run([consent_event(False), typing(4, "x")], site(), False)
    assert len(result.events) == 2
    assert result.consent_state == "not_required"


# --- state ------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    state = SessionMaskState()
    run(
        [snapshot(el(4, "input", {"type": "password"}), el(5, "div", {"class": "rr-mask"}))],
        consent_site("mask_until_consent"),
        True,
        state=state,
    )
    restored = SessionMaskState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert restored.to_dict() == state.to_dict()
    assert restored.nodes.runs() == state.nodes.runs()
    assert restored.consent == "granted"


def test_lost_state_masks_until_the_next_full_snapshot() -> None:
    result = run([typing(4, SECRET)], RECORDING, state=SessionMaskState.from_dict(None))
    assert SECRET not in dumped(result)


def test_state_of_an_older_format_is_replaced_by_a_fresh_one() -> None:
    state = SessionMaskState.from_dict({"seen_full_snapshot": True, "_p": 3})
    assert state.nodes.runs() == []


def test_state_stays_small_for_a_realistic_page() -> None:
    from services.dev.rrweb_gen import generate_session

    session = generate_session(start_ms=1_700_000_000_000)
    state = SessionMaskState()
    for batch in session.batches:
        run(batch, state=state)
    assert len(orjson.dumps(state.to_dict())) < 1024


def test_mask_text_keeps_length_and_whitespace() -> None:
    assert mask_text("ab c\td\n") == "** *\t*\n"
