"""What the launcher says during a run, on its way to the renderer (``launcher.ui``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster.plan import LaunchPlan
    from launcher.supervise.ranks import ProcessState, RunBoard
    from launcher.supervise.result import RunSummary
    from launcher.ui.renderers import Renderer
    from wrn.contract import Event


class RunConsole:
    """What the launcher says during a run: every call goes to the renderer, and a broken
    terminal or pipe (``OSError``, ``ValueError``) never breaks supervision (the renderer is
    left alone from then on); warnings and errors are also kept on the run's board, whose
    dashboard lists them."""

    def __init__(self, renderer: Renderer, board: RunBoard | None = None) -> None:
        self.renderer, self.board = renderer, board
        self.broken = False

    def _call(self, method: Callable[..., None], *args: Any) -> None:
        if self.broken:
            return
        try:
            method(*args)
        except (OSError, ValueError):
            self.broken = True

    def run_started(self, plan: LaunchPlan, run_dir: str, notes: dict[str, Any],
                    board: RunBoard) -> None:
        self._call(self.renderer.run_started, plan, run_dir, notes, board)

    def process_started(self, name: str, rank: int | None, host: str, pid: int | None) -> None:
        self._call(self.renderer.process_started, name, rank, host, pid)

    def process_exited(self, name: str, rank: int | None, host: str, exit_code: int | None,
                       signal: str | None, expected: bool) -> None:
        self._call(self.renderer.process_exited, name, rank, host, exit_code, signal, expected)

    def event(self, host: str, record: dict[str, Any], event: Event, board: RunBoard) -> None:
        self._call(self.renderer.event, host, record, event, board)

    def health(self, proc: ProcessState, stalled: bool) -> None:
        self._call(self.renderer.health, proc, stalled)

    def message(self, level: str, text: str) -> None:
        if self.board is not None:
            self.board.message(level, text, self.board.clock())
        self._call(self.renderer.message, level, text)

    def log_line(self, rank: int | None, host: str, line: str) -> None:
        self._call(self.renderer.log_line, rank, host, line)

    def tick(self, board: RunBoard) -> None:
        self._call(self.renderer.tick, board)

    def finished(self, summary: RunSummary) -> None:
        self._call(self.renderer.finished, summary)
