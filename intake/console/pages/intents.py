"""Intent search, one intent's detail, and its refund and redeliver actions.

The actions run the operator API's own use cases (shared/services/operator_payments.py)
with the operator as the audit actor, so a console refund and an API refund leave the
same rows. Each asks first: a POST without ``confirm=yes`` shows what would be done and
a form with a required confirmation box; only the confirmed POST acts.
"""

from __future__ import annotations

from urllib.parse import quote

from intake.console import forms
from intake.console.pages.base import Page, filters_of, next_after
from intake.console.render import page
from intake.console.session import redirect
from intake.resources.operator.actor import actor_of
from shared.db.uow import transact
from shared.domain.intent import Status
from shared.services import operator_payments

PAGE_SIZE = 20
STATUSES = tuple(s.value for s in Status)


class Search(Page):
    console_roles = {"GET": "viewer"}

    def on_get(self, req, resp) -> None:
        query = forms.read(forms.Search, req.params)
        with self._uow() as uow:
            items, has_more = operator_payments.search_intents(
                uow,
                merchant=query.merchant,
                status=query.status,
                last4=query.last4,
                created_gte=forms.day_start(query.created_gte),
                created_lte=forms.day_end(query.created_lte),
                limit=PAGE_SIZE,
                starting_after=query.starting_after,
            )
        filters = filters_of(query)
        page(
            req,
            resp,
            "search.html",
            query=filters,
            statuses=STATUSES,
            items=items,
            next_after=next_after(items, has_more),
        )


class Detail(Page):
    console_roles = {"GET": "viewer"}

    def on_get(self, req, resp, intent_id: str) -> None:
        done = forms.read(forms.Done, req.params).done
        with self._uow() as uow:
            detail = operator_payments.intent_detail(uow, intent_id)
        notice = {"refunded": "Refund created.", "redelivered": "Redelivery queued."}.get(done)
        page(req, resp, "intent.html", notice=notice, **detail)


class Refund(Page):
    console_roles = {"POST": "support"}
    accepts_form = True

    def on_post(self, req, resp, intent_id: str) -> None:
        form = forms.read(forms.Refund, req.context.body)
        if form.confirm != "yes":
            with self._uow() as uow:
                detail = operator_payments.intent_detail(uow, intent_id)
            page(
                req,
                resp,
                "confirm_refund.html",
                intent=detail["payment_intent"],
                amount=int(form.amount),
                reason=form.reason,
            )
            return
        transact(
            self._uow,
            operator_payments.refund,
            actor_of(req),
            intent_id,
            int(form.amount),
            reason=form.reason,
        )
        raise redirect(f"/console/payment_intents/{quote(intent_id, safe='')}?done=refunded")


class Redeliver(Page):
    console_roles = {"POST": "support"}
    accepts_form = True

    def on_post(self, req, resp, event_id: str) -> None:
        form = forms.read(forms.Redeliver, req.context.body)
        if form.confirm != "yes":
            page(req, resp, "confirm_redeliver.html", event_id=event_id, intent_id=form.intent)
            return
        transact(self._uow, operator_payments.redeliver, actor_of(req), event_id)
        raise redirect(f"/console/payment_intents/{quote(form.intent, safe='')}?done=redelivered")
