"""What every routed call of one client starts from: its routing options, its judge, where outcomes go and its
memory of conversations."""

from __future__ import annotations

from dataclasses import dataclass

from tierwise.classifier.request import RouteOptions
from tierwise.serving.conversations import Conversations
from tierwise.serving.escalation import Accept, Escalation, Judge, OutcomeSink, RouteDecision, Routing, grade_outcome


@dataclass(frozen=True)
class CallDefaults:
    """A client's defaults; a call may override the options and the accept check."""

    options: RouteOptions
    judge: Judge
    sink: OutcomeSink
    conversations: Conversations

    def route_options(self, routing: RouteOptions | None) -> RouteOptions:
        return self.options if routing is None else routing

    def escalation(
        self, decision: RouteDecision, accept: Accept | None, batch: bool = False, conversation: bytes | None = None
    ) -> Escalation:
        """A walk along the decision's chain, judged by the call's own `accept` if it brought one; its answers
        remembered as the turns of `conversation` (a key of `conversations`), if given."""
        judge = self.judge if accept is None else Judge(accept, self.judge.threshold)
        return Escalation(decision, judge, self.sink, batch=batch, on_settled=self.conversations.recorder(conversation))

    def grade(self, routing: Routing, success: bool | None, score: float | None) -> None:
        """Report a later grade for a served answer: another outcome for the attempt that answered."""
        self.sink.report(grade_outcome(routing.request_id, routing.model, routing.attempt, success, score))
