"""The "implement it" exercises of chapters 2-10: the solution in each chapter's dropdown
passes its check cell, and the stub and a plausible wrong answer do not (every check can
fail). Each check cell is self-contained: it builds what it compares against."""

import contextlib
import io
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
# A plausible mistake for each exercise (a missing term, a wrong normalisation).
WRONG = {
    "02_embedder": """\
def attend(block, x):
    return x + block.gamma * block.out(F.avg_pool2d(block.value(x), 1))
""",
    "03_generator": """\
def my_adain(x, psi):
    channels = x.shape[1]
    normed = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)
    return psi[:, :channels, None, None] * normed + psi[:, channels:, None, None]
""",
    "04_discriminator": """\
def projection_score(D, image, landmarks, index):
    v = D.embed(image, landmarks)
    return (v * D.W[index]).sum(dim=1) + D.b


def power_sigma(layer, steps):
    return layer.weight.detach().flatten(1).norm()
""",
    "05_losses": """\
def hinge(real_score, fake_score):
    return (1 - real_score).mean() + (1 + fake_score).mean()


def match(w_i, e_hat, weight):
    return weight * (w_i - e_hat).abs().sum()
""",
    "06_meta_learning": """\
def step_losses(model, batch, content, recipe):
    E, G, D = model.embedder, model.generator, model.discriminator
    x, y, index = batch["target_frame"], batch["target_landmarks"], batch["video_index"]
    _, e_hat = E(batch["source_frames"], batch["source_landmarks"])
    x_hat = G(y, e_hat)
    fake_score, _ = D(x_hat, y, index)
    return {"cnt": content(x_hat, x).item(), "adv": -fake_score.mean().item(),
            "mch": (recipe.lambda_mch * (D.W[index] - e_hat).abs().mean()).item()}
""",
    "07_fine_tuning": """\
def feed_forward(model, frames, points, target_points):
    size = model.config.image_size
    with torch.no_grad():
        _, e_new = model.embedder(frames[None], draw_landmarks(points, size)[None])
        return model.generator(draw_landmarks(points, size)[:len(target_points)],
                               e_new.expand(len(target_points), -1))
""",
    "09_puppeteering": """\
def align(source, target):
    mu_a, mu_b = source.mean(0), target.mean(0)
    a, b = source - mu_a, target - mu_b
    u, sigma, vt = np.linalg.svd(b.T @ a)
    rotation = u @ vt
    scale = sigma.sum() / (a ** 2).sum()
    return scale, rotation, mu_b - mu_a
""",
    "10_real_videos": """\
import zlib
def held_out(person, share):
    return zlib.crc32(person.encode()) % 100 < share * 100
""",
}


def exercise(chapter: str):
    """(question, stub, check) of the chapter's implement-it exercise."""
    cells = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4).cells
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown" and "Implement it." in cell.source:
            stub, check = cells[index + 1], cells[index + 2]
            assert stub.cell_type == check.cell_type == "code"
            return cell.source, stub.source, check.source
    raise AssertionError(f"{chapter} has no implement-it exercise")


def run(*sources: str) -> str:
    namespace, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for source in sources:
            exec(compile(source, "<exercise>", "exec"), namespace)
    return out.getvalue()


@pytest.mark.parametrize("chapter", sorted(WRONG))
def test_the_solution_passes_and_the_stub_and_a_mistake_do_not(chapter):
    question, stub, check = exercise(chapter)
    solution = re.search(r"```\{dropdown\} Solution\n(.*?)```", question, re.S)
    assert solution, "the solution sits in a collapsed dropdown"
    assert run(stub, textwrap.dedent(solution.group(1)), check).strip().endswith("correct!")
    assert "then run this cell again" in run(stub, check)
    assert "not quite" in run(stub, WRONG[chapter], check)
