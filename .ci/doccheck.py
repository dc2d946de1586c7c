#!/usr/bin/env python3
"""doccheck: run every command the documents show and compare what it prints with what they say it prints.

Usage:  python3 .ci/doccheck.py [--fix] [--all] [--root DIR] [FILE.md ...]
        (`make docs` runs it with no arguments, `make docs-fix` with --fix)

What it reads. Every ```console block of README.md, Stages/*/README.md and Chapters/*.md (or of the files named
on the command line, relative to --root). In such a block a line that starts with "$ " is a command; the lines
after it, up to the next "$ " line or the end of the block, are what the command prints (stdout and stderr
together). Each command runs with bash from the repository root (--root), in the order the document shows them,
so a later command may use a file an earlier one wrote (a checkpoint, say). A command must exit with status 0.

How output is compared. Line by line and exactly, except:
  - trailing whitespace on a line, and blank lines at the end of the output, are ignored;
  - [..] inside a line matches any text within that line (a timing, a throughput, an ETA, a memory figure),
    and the spaces written before it any spaces, so that a column of figures can stay aligned:
        step 100/100  loss 0.0123  accuracy 100.0%  [..] steps/s  ETA [..]
           256        [..]           [..]        [..]
  - a line that starts with "..." (just "...", or "... " followed by a note for the reader) matches any number
    of lines, none included:
        ... (the 26 rows of stage 1's cases, all PASS, as in chapter 1)
    (so a line the command really prints cannot start with "..."; indent it or mark it with [..]).
An HTML comment on the line right before the block's opening fence (blank lines between are allowed) changes
how the whole block is run:
  <!-- doccheck: ci-only -->   the commands take more than a couple of minutes: run only when the environment has
                               CI=true, or with --all; otherwise they are counted as skipped
  <!-- doccheck: skip -->      never run (say in the document why not)
Commands run with COLUMNS=80 and without make's MAKEFLAGS/MAKELEVEL, so a `make ...` shown in a document
behaves as when a reader types it, also under `make docs`.

What it prints. One line per command (ok / FAIL / skip, its time, file:line, the command), then for each
mismatch a unified diff between the document's lines and what the command printed (with the document's [..]
and "..." kept where they still match), its hunks numbered by the document's lines, and a summary:
    docs: 25 commands in 9 documents, 25 match (105 s)
It exits 1 when any command's output differs or a command fails.

--fix rewrites, in place, the output of every command that does not match with what it printed, keeping each
[..] line and "..." line that still matches. A [..] line whose fixed text changed loses its marker; the
checker says which lines those are, so the marker can be put back by hand.
"""

import argparse
import difflib
import glob
import os
import re
import subprocess
import sys
import time

ELISION = "..."
WILDCARD = "[..]"
DIRECTIVE = re.compile(r"^\s*<!--\s*doccheck:\s*([a-z-]+)\b.*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([^\s`]*)")
KNOWN_DIRECTIVES = {"ci-only", "skip"}
DEFAULT_DOCUMENTS = ["README.md", "Stages/*/README.md", "Chapters/*.md"]


# ---- reading the documents


class Command:
    """One `$ ` line of a console block and the lines the document says it prints."""

    def __init__(self, path, line, text, expected, first, mode):
        self.path = path  # the document, relative to the root
        self.line = line  # 1-based line of the `$ ` line
        self.text = text  # the command, without "$ "
        self.expected = expected  # the output lines as the document shows them
        self.first = first  # 0-based index into the document's lines of the first output line
        self.mode = mode  # "run", "ci-only" or "skip"


def parse(path, lines):
    """The commands of every console block in a document's lines, and a list of problems found reading it."""
    commands, problems = [], []
    i, directive = 0, None
    while i < len(lines):
        line = lines[i]
        found = DIRECTIVE.match(line)
        if found:
            directive = (found.group(1), i + 1)
            if found.group(1) not in KNOWN_DIRECTIVES:
                problems.append(f"{path}:{i + 1}: unknown doccheck directive '{found.group(1)}'")
            i += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            if line.strip():
                directive = None
            i += 1
            continue
        marker, info = fence.group(2), fence.group(3)
        end = i + 1
        while end < len(lines) and not re.match(r"^\s*" + re.escape(marker[0]) + "{%d,}\\s*$" % len(marker), lines[end]):
            end += 1
        if info == "console":
            mode = directive[0] if directive and directive[0] in KNOWN_DIRECTIVES else "run"
            body = list(range(i + 1, end))
            starts = [k for k in body if lines[k].startswith("$ ")]
            if not starts:
                problems.append(f"{path}:{i + 1}: a console block without a `$ ` command (use ```text for output alone)")
            elif body and starts[0] != body[0]:
                problems.append(f"{path}:{body[0] + 1}: text before the first `$ ` command of a console block")
            for n, k in enumerate(starts):
                stop = starts[n + 1] if n + 1 < len(starts) else end
                expected = [lines[j] for j in range(k + 1, stop)]
                commands.append(Command(path, k + 1, lines[k][2:].strip(), expected, k + 1, mode))
        elif directive:
            problems.append(f"{path}:{directive[1]}: a doccheck directive before a block that is not ```console")
        directive = None
        i = end + 1
    return commands, problems


# ---- comparing


def is_elision(pattern):
    return pattern.rstrip() == ELISION or pattern.startswith(ELISION + " ")


def line_matches(pattern, actual):
    pattern, actual = pattern.rstrip(), actual.rstrip()
    if WILDCARD not in pattern:
        return pattern == actual
    parts = pattern.split(WILDCARD)
    # the spaces written before a [..] belong to it, so that a column of figures can stay aligned
    parts = [re.escape(part.rstrip(" ")) for part in parts[:-1]] + [re.escape(parts[-1])]
    return re.fullmatch(".*".join(parts), actual, re.DOTALL) is not None


def similar(pattern, actual):
    plain = pattern.replace(WILDCARD, "")
    return difflib.SequenceMatcher(None, plain, actual, autojunk=False).ratio() >= 0.6


def trim(lines):
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def align(expected, actual):
    """The cheapest edit of the document's lines into the printed ones, where a line that matches its pattern and
    any lines swallowed by an elision cost nothing. Returns (cost, new lines for the document, lines whose [..]
    marker was lost). Cost 0 means the output matches."""
    e, a = trim(expected), trim(actual)
    n, m = len(e), len(a)
    inf = float("inf")
    judge = n * m <= 40000  # comparing lines for similarity is only for a readable diff: skip it on huge outputs
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    step = [[None] * (m + 1) for _ in range(n + 1)]
    cost[n][m] = 0
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            best, how = inf, None
            if i < n and is_elision(e[i]):
                if j < m and cost[i][j + 1] < best:
                    best, how = cost[i][j + 1], "swallow"
                if cost[i + 1][j] < best:
                    best, how = cost[i + 1][j], "close"
            else:
                if i < n and j < m:
                    if line_matches(e[i], a[j]):
                        best, how = cost[i + 1][j + 1], "match"
                    else:
                        c = cost[i + 1][j + 1] + (1 if judge and similar(e[i], a[j]) else 2)
                        if c < best:
                            best, how = c, "replace"
                if i < n and cost[i + 1][j] + 1 < best:
                    best, how = cost[i + 1][j] + 1, "delete"
                if j < m and cost[i][j + 1] + 1 < best:
                    best, how = cost[i][j + 1] + 1, "insert"
            cost[i][j], step[i][j] = best, how
    new, lost = [], []
    i = j = 0
    while i < n or j < m:
        how = step[i][j]
        if how == "swallow":
            j += 1
        elif how == "close":
            new.append(e[i])
            i += 1
        elif how == "match":
            new.append(e[i])
            i, j = i + 1, j + 1
        elif how == "replace":
            if WILDCARD in e[i]:
                lost.append(len(new))
            new.append(a[j])
            i, j = i + 1, j + 1
        elif how == "delete":
            i += 1
        else:
            new.append(a[j])
            j += 1
    return cost[0][0], new, lost


def unified(path, old, new, first_line):
    """A unified diff of a block's lines, its hunks numbered by the document's lines (first_line is the 1-based
    line of old[0])."""
    out = [f"--- {path} (the document)", f"+++ {path} (what the command printed)"]
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for group in matcher.get_grouped_opcodes(3):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{first_line + i1},{i2 - i1} +{first_line + j1},{j2 - j1} @@")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out += [" " + line for line in old[a1:a2]]
                continue
            out += ["-" + line for line in old[a1:a2]]
            out += ["+" + line for line in new[b1:b2]]
    return "\n".join(out)


# ---- running


def environment():
    env = dict(os.environ)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR"):
        env.pop(name, None)
    env["COLUMNS"] = "80"
    return env


def run(command, root, timeout):
    started = time.monotonic()
    try:
        done = subprocess.run(["bash", "-c", command], cwd=root, env=environment(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        status, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        status, output = f"timed out after {timeout} s", expired.stdout or b""
    text = output.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return status, text.split("\n"), time.monotonic() - started


def documents(root, files):
    if files:
        return [os.path.relpath(os.path.join(root, f), root) if not os.path.isabs(f) else os.path.relpath(f, root)
                for f in files]
    found = []
    for pattern in DEFAULT_DOCUMENTS:
        found += sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern)))
    return found


LINK = re.compile(r"\]\(([^)\s]+)\)")


def broken_links(path, lines, root):
    """Every relative link of a document ([text](target)) must name a file or folder that exists: a moved file
    breaks the documents that point at it, and this says where. Web links and anchors are not followed."""
    found = []
    base = os.path.dirname(os.path.join(root, path))
    fenced = False
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#")[0]
            if file and not os.path.exists(os.path.normpath(os.path.join(base, file))):
                found.append(f"{path}:{number}: the link to '{target}' names no file")
    return found


def main(argv):
    parser = argparse.ArgumentParser(description="Run the commands the documents show and compare their output.")
    parser.add_argument("files", nargs="*", help="documents to check, relative to --root (default: README.md, "
                        "Stages/*/README.md, Chapters/*.md)")
    parser.add_argument("--root", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..")),
                        help="the directory the commands run in (default: the repository root)")
    parser.add_argument("--fix", action="store_true", help="rewrite the output of each command that differs")
    parser.add_argument("--all", action="store_true", help="also run the ci-only blocks (as CI=true does)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one command may take (default 1800)")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.root)
    run_ci_only = args.all or os.environ.get("CI", "").lower() == "true"

    counts = {"commands": 0, "match": 0, "differ": 0, "failed": 0, "skipped": 0, "fixed": 0}
    reports, problems = [], []
    paths = documents(root, args.files)
    total_started = time.monotonic()
    for path in paths:
        try:
            with open(os.path.join(root, path), encoding="utf-8") as f:
                lines = f.read().split("\n")
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror}")
            continue
        commands, found = parse(path, lines)
        problems += found + broken_links(path, lines, root)
        edits = []  # (first index, old length, new lines), applied bottom-up after the document's commands ran
        for command in commands:
            counts["commands"] += 1
            where = f"{path}:{command.line}"
            if command.mode == "skip" or (command.mode == "ci-only" and not run_ci_only):
                counts["skipped"] += 1
                why = "skip" if command.mode == "skip" else "ci-only; CI=true or --all runs it"
                print(f"skip  {'':>8}  {where}  {command.text}  ({why})", flush=True)
                continue
            status, printed, seconds = run(command.text, root, args.timeout)
            cost, new, lost = align(command.expected, printed)
            old = trim(command.expected)
            verdict = "ok"
            if status != 0:
                verdict = "FAIL"
                counts["failed"] += 1
                detail = status if isinstance(status, str) else f"exited with status {status}"
                reports.append(f"{where}: `{command.text}` {detail}\n" + unified(path, old, new, command.first + 1))
            elif cost > 0:
                verdict = "FAIL"
                counts["differ"] += 1
                message = f"{where}: `{command.text}` printed something else than the document shows"
                reports.append(message + "\n" + unified(path, old, new, command.first + 1))
                if args.fix:
                    edits.append((command.first, len(command.expected), new))
                    counts["fixed"] += 1
                    verdict = "fixed"
                    for k in lost:
                        problems.append(f"{path}:{command.first + 1 + k}: a [..] line changed and lost its marker")
            else:
                counts["match"] += 1
            print(f"{verdict:<5} {seconds:7.1f} s  {where}  {command.text}", flush=True)
        if edits:
            for first, length, new in sorted(edits, reverse=True):
                # keep the blank lines the block had after the output (they are not compared)
                kept = lines[first:first + length]
                tail = len(kept) - len(trim(kept)) if trim(kept) else len(kept)
                lines[first:first + length] = new + [""] * tail
            with open(os.path.join(root, path), "w", encoding="utf-8") as f:
                f.write("\n".join(lines))

    for report in reports:
        print("\n" + report)
    for problem in problems:
        print(problem)
    parts = [f"{counts['match']} match"]
    if counts["differ"]:
        parts.append(f"{counts['differ']} differ" + (f" ({counts['fixed']} fixed)" if args.fix else ""))
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    print(f"\ndocs: {counts['commands']} commands in {len(paths)} documents, " + ", ".join(parts)
          + f" ({time.monotonic() - total_started:.0f} s)")
    bad = counts["failed"] + (0 if args.fix else counts["differ"]) + len(
        [p for p in problems if "lost its marker" not in p])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
