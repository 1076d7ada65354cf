"""`janus chat` driven through stdin, as a pipe would."""

from conftest import checkpoint_dir, golden_json, image_path
from conftest import run_janus as run


def test_chat_turns_images_and_commands_through_stdin(tmp_path):
    u = golden_json("janus-pro-1b-tiny")["understand"]
    turns = "\n".join([
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
    ])  # fmt: skip
    r = run("chat", str(image_path(u["image"])), "-m", str(checkpoint_dir("janus-pro-1b-tiny")), "--max-tokens", "24",
            "--dtype", "float32", "-o", str(tmp_path / "out"), "-q", stdin=turns + "\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    first, second, made, again = r.stdout.splitlines()
    assert first == u["greedy_text"]  # the official model's greedy answer
    assert second and second != first  # the second turn sees the whole conversation and both images
    assert made == str(tmp_path / "out" / "a-red-fox-000.png") and (tmp_path / "out" / "a-red-fox-000.png").is_file()
    assert again == first  # /reset forgot the conversation
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "missing.png" in errors[0] and "/frobnicate" in errors[1]
    assert "Traceback" not in r.stderr
