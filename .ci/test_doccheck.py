#!/usr/bin/env python3
"""Tests of .ci/doccheck.py on tiny documents in a temporary directory: it passes on output that matches, fails
(naming the file and line) when a printed line is edited, honours the [..] and "..." markers and the
ci-only/skip directives, and --fix rewrites what differs. Run: python3 .ci/test_doccheck.py"""

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "doccheck.py")

FENCE = "```"
DOCUMENT = f"""\
# A tiny document

{FENCE}console
$ echo hello
hello
$ printf 'a\\nb %d ms\\n' 12
a
b 12 ms
{FENCE}
"""


class DoccheckTests(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.root = self.directory.name

    def tearDown(self):
        self.directory.cleanup()

    def write(self, text, name="doc.md"):
        with open(os.path.join(self.root, name), "w", encoding="utf-8") as f:
            f.write(text)

    def read(self, name="doc.md"):
        with open(os.path.join(self.root, name), encoding="utf-8") as f:
            return f.read()

    def check(self, *options, name="doc.md", env=None):
        environment = {k: v for k, v in os.environ.items() if k != "CI"}
        environment.update(env or {})
        done = subprocess.run([sys.executable, CHECKER, "--root", self.root, *options, name], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return done.returncode, done.stdout

    def test_matching_output_passes(self):
        self.write(DOCUMENT)
        status, output = self.check()
        self.assertEqual(status, 0, output)
        self.assertIn("docs: 2 commands in 1 documents, 2 match", output)

    def test_an_edited_output_line_fails_naming_file_and_line(self):
        self.write(DOCUMENT.replace("b 12 ms", "b 13 ms"))
        status, output = self.check()
        self.assertEqual(status, 1, output)
        self.assertIn("doc.md:6: `printf 'a\\nb %d ms\\n' 12` printed something else", output)
        self.assertIn("@@ -7,2 +7,2 @@", output)  # the hunk is numbered by the document's lines
        self.assertIn("-b 13 ms", output)
        self.assertIn("+b 12 ms", output)
        self.assertIn("1 match, 1 differ", output)

    def test_a_missing_and_an_extra_line_fail(self):
        self.write(DOCUMENT.replace("a\nb 12 ms\n", "a\n"))
        self.assertEqual(self.check()[0], 1)
        self.write(DOCUMENT.replace("hello\n", "hello\nworld\n"))
        self.assertEqual(self.check()[0], 1)

    def test_the_wildcard_matches_within_a_line_only(self):
        self.write(DOCUMENT.replace("b 12 ms", "b [..] ms"))
        status, output = self.check()
        self.assertEqual(status, 0, output)
        self.write(DOCUMENT.replace("b 12 ms", "c [..] ms"))
        self.assertEqual(self.check()[0], 1)
        self.write(DOCUMENT.replace("a\nb 12 ms", "[..] ms"))  # [..] does not reach across lines
        self.assertEqual(self.check()[0], 1)
        self.write(DOCUMENT.replace("b 12 ms", "b       [..] ms"))  # the spaces before it are its own
        self.assertEqual(self.check()[0], 0)

    def test_an_elision_matches_any_number_of_lines(self):
        for middle in ["...", "... (the first line, cut here)"]:
            self.write(DOCUMENT.replace("a\nb 12 ms", f"{middle}\nb 12 ms"))
            status, output = self.check()
            self.assertEqual(status, 0, output)
        self.write(DOCUMENT.replace("a\nb 12 ms", "a\n...\nb 12 ms"))  # none at all
        self.assertEqual(self.check()[0], 0)
        self.write(DOCUMENT.replace("a\nb 12 ms", "...\nc 12 ms"))  # what follows it must still match
        self.assertEqual(self.check()[0], 1)

    def test_trailing_whitespace_and_blank_lines_are_ignored(self):
        self.write(DOCUMENT.replace("hello\n", "hello   \n").replace("b 12 ms\n", "b 12 ms\n\n"))
        self.assertEqual(self.check()[0], 0)

    def test_a_failing_command_fails(self):
        self.write(f"{FENCE}console\n$ echo out; exit 3\nout\n{FENCE}\n")
        status, output = self.check()
        self.assertEqual(status, 1, output)
        self.assertIn("exited with status 3", output)

    def test_stderr_is_part_of_the_output_and_commands_run_in_order_from_the_root(self):
        self.write(f"{FENCE}console\n$ echo made > made.txt; echo oops >&2\noops\n$ cat made.txt\nmade\n{FENCE}\n")
        status, output = self.check()
        self.assertEqual(status, 0, output)

    def test_ci_only_blocks_run_only_in_ci_and_skip_blocks_never(self):
        text = f"<!-- doccheck: ci-only -->\n{FENCE}console\n$ echo ci\nwrong\n{FENCE}\n"
        text += f"\n<!-- doccheck: skip -->\n\n{FENCE}console\n$ exit 1\n{FENCE}\n"
        self.write(text)
        status, output = self.check(env={"CI": ""})
        self.assertEqual(status, 0, output)
        self.assertIn("2 skipped", output)
        self.assertEqual(self.check(env={"CI": "true"})[0], 1)
        self.assertEqual(self.check("--all", env={"CI": ""})[0], 1)

    def test_fix_rewrites_what_differs_and_keeps_the_markers_that_still_match(self):
        edited = DOCUMENT.replace("\nhello\n", "\nhullo\n").replace("a\nb 12 ms", "...\nb [..] ms\nc")
        self.write(edited + "\nafter the block\n")
        status, output = self.check("--fix")
        self.assertEqual(status, 0, output)
        self.assertIn("fixed", output)
        self.assertEqual(self.read(), DOCUMENT.replace("a\nb 12 ms", "...\nb [..] ms") + "\nafter the block\n")
        status, output = self.check()
        self.assertEqual(status, 0, output)

    def test_fix_leaves_matching_documents_alone(self):
        self.write(DOCUMENT)
        self.check("--fix")
        self.assertEqual(self.read(), DOCUMENT)

    def test_other_blocks_are_not_run(self):
        self.write(textwrap.dedent(f"""\
            {FENCE}sh
            $ exit 1
            {FENCE}

            {FENCE}text
            $ exit 1
            {FENCE}
            """))
        status, output = self.check()
        self.assertEqual(status, 0, output)
        self.assertIn("docs: 0 commands in 1 documents", output)

    def test_a_console_block_without_a_command_is_an_error(self):
        self.write(f"{FENCE}console\njust output\n{FENCE}\n")
        status, output = self.check()
        self.assertEqual(status, 1, output)
        self.assertIn("doc.md:1: a console block without", output)

    def test_a_link_to_a_missing_file_fails_naming_the_line(self):
        os.mkdir(os.path.join(self.root, "Stages"))
        with open(os.path.join(self.root, "Stages", "Engine.swift"), "w") as f:
            f.write("")
        self.write("[here](Stages/Engine.swift) and [web](https://example.com) and [up](#top)\n")
        status, output = self.check()
        self.assertEqual(status, 0, output)
        self.write("one\n[gone](Stages/Kernels.swift#L3)\n")
        status, output = self.check()
        self.assertNotEqual(status, 0)
        self.assertIn("doc.md:2: the link to 'Stages/Kernels.swift#L3' names no file", output)

if __name__ == "__main__":
    result = unittest.TextTestRunner(verbosity=2).run(unittest.defaultTestLoader.loadTestsFromTestCase(DoccheckTests))
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() else 1)
