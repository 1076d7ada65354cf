"""`janus chat` driven through stdin, as a pipe would."""

import json

from conftest import checkpoint_dir, golden_json, image_path
from conftest import run_janus as run


def test_chat_turns_images_and_commands_through_stdin(tmp_path):
    u = golden_json("janus-pro-1b-tiny")["understand"]
    turns = "\n".join(
        [
            u["question"],  # first turn: the image given on the command line is attached to it
            "/image " + str(image_path("grey0.png")),
            "And this one?",
            "/image " + str(tmp_path / "missing.png"),
            "/frobnicate",
            "/imagine a red fox",
            "/reset",
            "/image " + str(image_path(u["image"])),
            u["question"],
            "/quit",
            "never read",
        ]
    )
    r = run(
        "chat",
        str(image_path(u["image"])),
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        "--max-tokens",
        "24",
        "--dtype",
        "float32",
        "-o",
        str(tmp_path / "out"),
        "-q",
        stdin=turns + "\n",
    )
    assert r.returncode == 0, r.stderr
    first, second, made, again = r.stdout.splitlines()
    assert first == u["greedy_text"]  # the official model's greedy answer
    assert second and second != first  # the second turn sees the whole conversation and both images
    assert (
        made == str(tmp_path / "out" / "a-red-fox-000.png")
        and (tmp_path / "out" / "a-red-fox-000.png").is_file()
    )
    assert again == first  # /reset forgot the conversation
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "missing.png" in errors[0] and "/frobnicate" in errors[1]
    assert "Traceback" not in r.stderr


def test_chat_jsonl_gives_one_object_per_answer_and_image(tmp_path):
    u = golden_json("janus-pro-1b-tiny")["understand"]
    turns = f"{u['question']}\n/imagine a red fox\n"
    r = run(
        "chat",
        str(image_path(u["image"])),
        "-m",
        str(checkpoint_dir("janus-pro-1b-tiny")),
        "--max-tokens",
        "24",
        "--dtype",
        "float32",
        "-o",
        str(tmp_path),
        "--jsonl",
        "-q",
        stdin=turns,
    )
    assert r.returncode == 0, r.stderr
    answer, image = (json.loads(line) for line in r.stdout.splitlines())
    assert answer == {
        "turn": 0,
        "user": u["question"],
        "images": [str(image_path(u["image"]))],
        "text": u["greedy_text"],
        "tokens": 24,
        "seed": 0,
    }
    assert (image["prompt"], image["seed"], image["index"]) == ("a red fox", 0, 0) and (
        tmp_path / "a-red-fox-000.png"
    ).is_file()
