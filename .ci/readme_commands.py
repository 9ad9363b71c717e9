"""Prints the commands of README.md's first two ```bash code blocks, one per line.

CI runs exactly these (`.ci/run`), so the README's copy-paste commands cannot drift from
what is tested. A block must hold one command; backslash continuations are joined.
"""
import sys


def blocks(text: str) -> list[tuple[str, str]]:
  """(language, body) of every fenced code block, in order."""
  out, lang, body = [], None, []
  for line in text.splitlines():
    if line.startswith("```"):
      if lang is None:
        lang, body = line[3:].strip(), []
      else:
        out.append((lang, "\n".join(body) + "\n"))
        lang = None
    elif lang is not None:
      body.append(line)
  return out


def commands(text: str, n: int = 2) -> list[str]:
  first = blocks(text)[:n]
  if any(lang not in ("bash", "sh", "shell") for lang, _ in first):
    raise SystemExit("README.md's first two code blocks must be ```bash blocks")
  out = []
  for _, b in first:
    lines = [l for l in b.replace("\\\n", " ").splitlines() if l.strip() and not l.lstrip().startswith("#")]
    if len(lines) != 1:
      raise SystemExit(f"README code block should hold one command, got: {b!r}")
    out.append(lines[0].strip())
  if len(out) != n:
    raise SystemExit(f"README.md has {len(out)} code blocks, expected at least {n}")
  return out


if __name__ == "__main__":
  with open(sys.argv[1]) as f:
    print("\n".join(commands(f.read())))
