"""What is written on the controlling terminal: a server's or a config's words, never its
control sequences."""

from __future__ import annotations

from tests.support.sshkit import python_lines, run_in_pty


def test_prompts_and_titles_show_control_characters_escaped() -> None:
    """A keyboard-interactive title and prompt come from the server; a cluster name from the
    config. ESC there must not retitle, clear or recolour the user's terminal."""
    script = python_lines(
        [
            "from sbatchman.ssh import terminal",
            r"terminal.write('Two-factor\x1b]0;owned\x07 login\nsecond line\n')",
            r"answer = terminal.ask('Code\x1b[2J: ', echo=True)",
            "print('ANSWER', answer, flush=True)",
        ]
    )
    result = run_in_pty(script, {r"Code\\#033\[2J: ": "123"})
    assert result.returncode == 0, result.output
    assert "Two-factor\\#033]0;owned\\#007 login\r\nsecond line\r\n" in result.output
    assert result.prompts == ["Code\\#033[2J: "]
    assert "ANSWER 123" in result.output
    assert "\x1b" not in result.output
