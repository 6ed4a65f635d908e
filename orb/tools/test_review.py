"""Each review rule fails on an orb that breaks it, and passes on the orb as it is."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pack
import review

SRC = Path(__file__).resolve().parent.parent / "src"


def edit(path: str, old: str, new: str):
    def apply(src: Path):
        file = src / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    return apply


def write(path: str, text: str):
    return lambda src: (src / path).write_text(text)


def remove(pattern: str):
    def apply(src: Path):
        for file in src.glob(pattern):
            file.unlink()

    return apply


BREAKS = {
    "RC001": edit("@orb.yml", "  source_url:", "  elsewhere:"),
    "RC002": edit("commands/status.yml", "description: >", "summary: >"),
    "RC003": remove("examples/*.yml"),
    "RC004": lambda src: shutil.copy(
        src / "examples/roll_back_on_demand.yml", src / "examples/rollback_example.yml"
    ),
    "RC005": lambda src: (src / "@orb.yml").write_text(
        re.sub(
            r"description: >\n(  .*\n)+",
            "description: Deploys with berth.\n",
            (src / "@orb.yml").read_text(),
        )
    ),
    "RC006": edit("@orb.yml", "source_url: https://", "source_url: ftp://"),
    "RC007": edit("@orb.yml", "home_url: https://github.com", "home_url: github.com"),
    "RC008": edit(
        "commands/status.yml",
        "      name: berth status --env << parameters.env >>\n",
        "",
    ),
    "RC009": edit(
        "commands/status.yml", "<< include(scripts/berth.sh) >>", "echo " + "x" * 80
    ),
    "RC010": edit("commands/rollback.yml", "  lock_wait:", "  lock-wait:"),
    "RC011": edit(
        "examples/roll_back_on_demand.yml", "berth-dev/berth@0.1", "berth-dev/berth@7.0"
    ),
    "RC012": lambda src: (src / "commands/install.yml").write_text(
        (src / "commands/install.yml")
        .read_text()
        .replace('default: "0.1.0"', "default: ${BERTH_VERSION}")
    ),
    "BR001": edit("commands/install.yml", 'default: "0.1.0"', 'default: "0.0.9"'),
    "BR002": edit(
        "scripts/berth.sh",
        "set -euo pipefail\n",
        'set -euo pipefail\neval "$ORB_STR_EXTRA_ARGS"\n',
    ),
    "BR003": edit(
        "commands/status.yml", "        ORB_STR_RECORD: << parameters.record >>\n", ""
    ),
    "BR004": edit(
        "jobs/deploy.yml", "        ORB_BOOL_FORCE: << parameters.force >>\n", ""
    ),
}


class Review(unittest.TestCase):
    def review(self, src: Path) -> list[str]:
        return review.review(src)

    def test_the_orb_passes_every_rule(self):
        self.assertEqual(self.review(SRC), [])

    def test_every_rule_fails_on_an_orb_that_breaks_it(self):
        self.assertEqual(sorted(BREAKS), sorted(code for code, _, _ in review.RULES))
        for code, breaking in BREAKS.items():
            with self.subTest(code), tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "src"
                shutil.copytree(SRC, src)
                breaking(src)
                found = self.review(src)
                self.assertTrue(
                    any(line.startswith(code) for line in found),
                    f"{code} passed: {found}",
                )


class Pack(unittest.TestCase):
    def test_included_scripts_have_their_heredocs_escaped_for_circleci(self):
        packed = pack.dump(pack.pack(SRC))
        pack.check_escapes(packed)
        self.assertIn('done \\<<<"$ORB_STR_EXTRA_ARGS"', packed)

    def test_an_unescaped_angle_pair_is_refused(self):
        pack.check_escapes("name: berth << parameters.env >> and \\<<<here")
        with self.assertRaises(pack.PackError):
            pack.check_escapes("name: berth <<env>>")


if __name__ == "__main__":
    unittest.main()
