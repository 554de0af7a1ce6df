"""The settings editors in Chromium (static/desk/settings.js): a condition row's operators and value
input follow its field, rows are added and removed, and what the script built posts and saves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chromium import browser_test

# The embedded desk of the keyboard tests (module-scoped; ada@example.com is an admin there).
from tests.test_desk_keyboard import desk, sign_in

__all__ = ["desk"]


@pytest.mark.slow
@browser_test
def test_the_trigger_editor_follows_the_field_and_saves_what_it_shows(
    desk: dict[str, Any], browser: Any, tmp_path: Any
) -> None:
    from playwright.sync_api import expect

    base = desk["base"]
    page = sign_in(browser, base)
    page.click("a.settings-link")
    page.click(".settings-nav >> text=Triggers")
    page.click("text=New trigger")
    page.fill("#f-name", "Urgent refunds")
    page.check("input[name=events][value=message_received]")
    first = page.locator(".cond-group[data-group=all] .cond-row").first
    # when the field becomes priority: its operators and a select of priorities
    first.locator("[data-role=field]").select_option("priority")
    ops = first.locator("[data-role=op] option").all_inner_texts()
    assert "is higher than" in ops
    assert "contains" not in ops
    first.locator("select[data-role=value]").select_option(label="Urgent")
    # when a second condition is added: subject contains refund
    page.click(".cond-group[data-group=all] .add-row")
    second = page.locator(".cond-group[data-group=all] .cond-row").nth(1)
    second.locator("[data-role=field]").select_option("subject")
    second.locator("[data-role=op]").select_option("contains")
    second.locator("input[data-role=value]").fill("refund")
    # and a list operator takes comma-separated text
    third_row_count = page.locator(".cond-group[data-group=all] .cond-row").count()
    assert third_row_count == 2
    # when a step is chosen: set status pending (a select of statuses)
    step = page.locator(".step-row").first
    step.locator("[data-role=type]").select_option("status")
    step.locator("select[data-role=value]").select_option("pending")
    page.locator("#form-errors").count()
    page.screenshot(path=str(tmp_path / "trigger-form.png"), full_page=True)
    page.click(".form-actions button[value=save]")
    # then the list shows it, and its form shows what was built
    page.wait_for_url(f"{base}/desk/settings/triggers/")
    expect(page.locator(".flash")).to_contain_text("Created trigger “Urgent refunds”.")
    page.click('.settings-table a:has-text("Urgent refunds")')
    expect(page.locator(".cond-group[data-group=all] [data-role=field]").first).to_have_value("priority")
    expect(page.locator(".cond-group[data-group=all] [data-role=value]").first).to_have_value("4")
    expect(page.locator(".cond-group[data-group=all] input[data-role=value]").first).to_have_value("refund")
    expect(page.locator(".step-row [data-role=value]").first).to_have_value("pending")
    # when a condition row is removed and the form saved again
    page.locator(".cond-group[data-group=all] .cond-row").nth(1).locator(".remove-row").click()
    page.click(".form-actions button[value=save]")
    page.wait_for_url(f"{base}/desk/settings/triggers/")
    page.click('.settings-table a:has-text("Urgent refunds")')
    # then one condition is left
    assert page.locator(".cond-group[data-group=all] [data-role=field] >> nth=0").input_value() == "priority"
    assert page.locator(".cond-group[data-group=all] .cond-row").count() == 2  # the condition + a blank row
    assert page.errors == []
