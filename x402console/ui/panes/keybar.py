"""The key bar: every active binding of the screen on one line, in one widget.

Textual's Footer builds a widget per key (about thirty here), each styled on its own: at start-up
laying them out took a third of the event loop's time between the first frame and live data,
and every frame that touched the bottom row re-rendered each of them. This draws the same keys
(one per action, the screen's active bindings, disabled ones dimmed, the command palette key at
the end) as a single line of text, rebuilt only when the bindings change. A click on a key
presses it, as in Textual's footer; the mouse stays optional.
"""

from __future__ import annotations

from rich.text import Text
from textual.events import Click
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["KeyBar"]


class KeyBar(Widget):
    COMPONENT_CLASSES = {"keybar--key", "keybar--description", "keybar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    KeyBar > .keybar--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyBar > .keybar--description {
        color: $footer-description-foreground;
    }
    KeyBar > .keybar--disabled {
        color: $text-disabled;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # (key display, description, key, enabled) per action; the palette key apart, drawn on
        # the right as in Textual's footer, where a narrow terminal never hides it.
        self._entries: list[tuple[str, str, str, bool]] = []
        self._palette: tuple[str, str, str, bool] | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)
        self.bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        palette_key = self.app.COMMAND_PALETTE_BINDING if self.app.ENABLE_COMMAND_PALETTE else None
        shown: dict[str, tuple[str, str, str, bool]] = {}  # action -> its first key, as Textual's footer groups them
        palette = None
        for key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items():
            entry = (self.app.get_key_display(binding), binding.description, binding.key, enabled)
            if key == palette_key:
                palette = entry
            elif binding.show and binding.action not in shown:
                shown[binding.action] = entry
        entries = list(shown.values())
        if entries != self._entries or palette != self._palette:
            self._entries, self._palette = entries, palette
            self.refresh()

    def _layout(self, width: int) -> tuple[Text, list[tuple[int, int, str, bool]]]:
        """The line for this width and where each key is on it."""
        key_style = self.get_component_rich_style("keybar--key")
        desc_style = self.get_component_rich_style("keybar--description")
        off_style = self.get_component_rich_style("keybar--disabled")

        def add(entry: tuple[str, str, str, bool], into: Text, spans: list) -> None:
            shown, description, key, enabled = entry
            start = len(into)
            into.append(f" {shown} ", key_style if enabled else off_style)
            if description:
                into.append(f"{description} ", desc_style if enabled else off_style)
            spans.append((start, len(into), key, enabled))

        tail, tail_spans = Text(no_wrap=True, end=""), []
        if self._palette is not None:
            add(self._palette, tail, tail_spans)
        text, spans = Text(no_wrap=True, end=""), []
        room = max(0, width - len(tail) - 1)
        for entry in self._entries:
            before = len(text)
            add(entry, text, spans)
            if len(text) > room:  # this key does not fit whole: it and the rest are left out
                text.right_crop(len(text) - before)
                spans.pop()
                text.append("…", off_style)
                break
        if tail:
            gap = max(1, width - len(text) - len(tail))
            text.append(" " * gap)
            spans += [(len(text) + a, len(text) + b, k, e) for a, b, k, e in tail_spans]
            text.append_text(tail)
        return text, spans

    def key_at(self, x: int) -> str | None:
        """The key drawn at column x (None between keys or on a disabled one)."""
        for start, end, key, enabled in self._layout(self.size.width)[1]:
            if start <= x < end:
                return key if enabled else None
        return None

    def render(self) -> Text:
        return self._layout(self.size.width)[0]

    def on_click(self, event: Click) -> None:
        key = self.key_at(event.x)
        if key is None:
            self.app.bell()
        else:
            self.app.simulate_key(key)
