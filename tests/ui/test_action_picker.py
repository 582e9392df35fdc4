"""The action picker's parameter box, through Pilot: the main value, name=value pairs, and a
malformed text that is refused in place."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input, Label

from x402console.actions.database import DeleteExpired
from x402console.ui.screens.action_picker import ActionPicker


class PickerApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.results: list = []

    def on_mount(self) -> None:
        self.push_screen(ActionPicker("database", [DeleteExpired()], "proofs.db"), self.results.append)


async def pick(text: str) -> tuple[PickerApp, str]:
    app = PickerApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("x")  # the action's own key
        await pilot.pause()
        box = app.screen.query_one("#param", Input)
        assert box.display and app.screen.focused is box
        label = str(app.screen.query_one("#param-label", Label).render())
        assert "batch_size" in label and "name=value for wal" in label
        for ch in text:
            await pilot.press("space" if ch == " " else "equals_sign" if ch == "=" else ch)
        await pilot.press("enter")
        await pilot.pause()
        shown = str(app.screen.query_one("#param-label", Label).render()) if isinstance(app.screen, ActionPicker) else ""
        return app, shown


async def test_main_value_and_pairs_reach_the_action() -> None:
    app, _ = await pick("2000")
    assert app.results == [("db.delete_expired", {"batch_size": "2000"})]
    app, _ = await pick("wal=no batch_size=300")
    assert app.results == [("db.delete_expired", {"wal": "no", "batch_size": "300"})]
    app, _ = await pick("")
    assert app.results == [("db.delete_expired", {})]


async def test_an_unknown_name_is_refused_in_place() -> None:
    app, shown = await pick("wal=no limit=5")
    assert app.results == []  # nothing chosen, the picker stays open
    assert "unknown parameter 'limit'" in shown
