"""Flow definitions: bad graphs are refused with clear errors before anything is registered or written."""

from __future__ import annotations

import pytest

import teguh

NOWHERE = "postgresql://nobody@invalid.invalid/none"  # a spawn that reached the database would fail otherwise


@pytest.fixture
def app() -> teguh.App:
    return teguh.App(NOWHERE, queue="jobs")


def noop(inp, up):
    return None


def test_steps_and_the_flow_are_registered_as_tasks(app):
    flow = teguh.Flow("order", app=app, on_failure="refund")
    flow.step("charge")(noop)
    flow.step("ship", depends_on=["charge"], queue="shipping", max_attempts=3)(noop)
    flow.step("refund")(noop)

    assert {"order", "order.charge", "order.ship", "order.refund"} <= set(app.tasks)
    assert app.get_task("order.ship").queue == "shipping"
    assert app.get_task("order.ship").defaults == {"max_attempts": 3}
    assert app.get_task("order").takes_context
    assert list(flow.steps) == ["charge", "ship", "refund"]
    assert flow.order() == ["charge", "ship"]  # the on_failure step is outside the graph
    flow.validate()


def test_the_decorator_returns_the_function_unchanged(app):
    flow = teguh.Flow("f", app=app)
    assert flow.step("a")(noop) is noop


def test_forward_references_are_allowed_and_ordered(app):
    flow = teguh.Flow("f", app=app)
    flow.step("join", depends_on=["left", "right"])(noop)
    flow.step("right", depends_on=["root"])(noop)
    flow.step("left", depends_on=["root"])(noop)
    flow.step("root")(noop)
    assert flow.order() == ["root", "right", "left", "join"]


def test_a_cycle_is_refused_at_the_step_that_closes_it_and_named(app):
    flow = teguh.Flow("f", app=app)
    flow.step("a", depends_on=["c"])(noop)
    flow.step("b", depends_on=["a"])(noop)
    with pytest.raises(teguh.InvalidArgument, match=r"cycle c -> b -> a -> c"):
        flow.step("c", depends_on=["b"])
    assert "f.c" not in app.tasks and "c" not in flow.steps


def test_a_step_depending_on_itself_is_refused(app):
    flow = teguh.Flow("f", app=app)
    with pytest.raises(teguh.InvalidArgument, match="'a' depends on itself"):
        flow.step("a", depends_on=["a"])


def test_duplicate_step_names_are_refused(app):
    flow = teguh.Flow("f", app=app)
    flow.step("a")(noop)
    with pytest.raises(teguh.InvalidArgument, match="step 'a' is declared twice"):
        flow.step("a")


def test_an_unknown_dependency_is_refused_before_anything_is_written(app):
    flow = teguh.Flow("f", app=app)
    flow.step("a")(noop)
    flow.step("b", depends_on=["a", "chrage"])(noop)
    with pytest.raises(teguh.InvalidArgument, match="step 'b' depends on unknown step\\(s\\) 'chrage'"):
        flow.validate()
    with pytest.raises(teguh.InvalidArgument, match="unknown step"):
        flow.spawn({"x": 1})  # raised before any connection: the DSN leads nowhere


def test_on_failure_must_name_a_declared_step_outside_the_graph(app):
    flow = teguh.Flow("f", app=app, on_failure="undo")
    flow.step("a")(noop)
    with pytest.raises(teguh.InvalidArgument, match="on_failure names unknown step 'undo'"):
        flow.validate()
    with pytest.raises(teguh.InvalidArgument, match="takes no depends_on or condition"):
        flow.step("undo", depends_on=["a"])
    with pytest.raises(teguh.InvalidArgument, match="depends on the on_failure step 'undo'"):
        flow.step("b", depends_on=["undo"])
    flow.step("undo")(noop)
    flow.validate()


def test_other_bad_definitions(app):
    flow = teguh.Flow("f", app=app)
    with pytest.raises(teguh.InvalidArgument, match="no steps"):
        flow.validate()
    with pytest.raises(teguh.InvalidArgument, match="reserved"):
        flow.step("$x")
    with pytest.raises(TypeError, match="list of step names"):
        flow.step("a", depends_on="b")
    with pytest.raises(teguh.InvalidArgument, match="must be callable"):
        flow.step("a", condition=True)
    with pytest.raises(TypeError, match=r"\(inp, up\)"):
        flow.step("a")(lambda inp: None)
    with pytest.raises(teguh.InvalidArgument, match="blank"):
        flow.step(" ")
    with pytest.raises(teguh.InvalidArgument, match="already registered"):
        teguh.Flow("f", app=app)
    assert list(flow.steps) == []


def test_a_step_task_name_already_taken_is_refused(app):
    app.task("f.a")(lambda params: None)
    flow = teguh.Flow("f", app=app)
    with pytest.raises(teguh.InvalidArgument, match=r"'f\.a' is already registered"):
        flow.step("a")(noop)
    assert list(flow.steps) == []
