"""The blocklist, the merchants and the audit log.

Each action is the operator API's use case, audited with the operator as the actor:
support adds to and removes from the blocklist, admin suspends and resumes merchants
and erases a merchant's customer (after a confirmation: it cannot be undone).
"""

from __future__ import annotations

from intake.console import forms
from intake.console.pages.base import Page, filters_of, next_after
from intake.console.render import page
from intake.console.session import redirect
from intake.resources.operator.actor import actor_of
from shared.db.uow import transact
from shared.domain.fraud import BLOCKLIST_KINDS
from shared.services import erasure, merchant_admin, merchants, operator_payments

PAGE_SIZE = 50


class Blocklist(Page):
    console_roles = {"GET": "viewer", "POST": "support"}
    accepts_form = True

    def on_get(self, req, resp) -> None:
        query = forms.read(forms.Page, req.params)
        with self._uow() as uow:
            entries, has_more = operator_payments.list_blocklist(
                uow, limit=PAGE_SIZE, starting_after=query.starting_after
            )
        notice = {"added": "Added to the blocklist.", "removed": "Removed from the blocklist."}
        page(
            req,
            resp,
            "blocklist.html",
            entries=entries,
            kinds=BLOCKLIST_KINDS,
            next_after=next_after(entries, has_more),
            notice=notice.get(query.done),
        )

    def on_post(self, req, resp) -> None:
        form = forms.read(forms.BlockEntry, req.context.body)
        transact(
            self._uow,
            operator_payments.block,
            actor_of(req),
            form.kind,
            form.value,
            reason=form.reason,
        )
        raise redirect("/console/blocklist?done=added")


class Unblock(Page):
    console_roles = {"POST": "support"}
    accepts_form = True

    def on_post(self, req, resp) -> None:
        form = forms.read(forms.BlockEntry, req.context.body)
        transact(self._uow, operator_payments.unblock, actor_of(req), form.kind, form.value)
        raise redirect("/console/blocklist?done=removed")


class Merchants(Page):
    console_roles = {"GET": "viewer"}

    def on_get(self, req, resp) -> None:
        query = forms.read(forms.Page, req.params)
        with self._uow() as uow:
            rows, has_more = merchant_admin.list_merchants(
                uow, limit=PAGE_SIZE, starting_after=query.starting_after
            )
        done = {
            "suspended": "Merchant suspended.",
            "resumed": "Merchant resumed.",
            "erased": "Customer erased.",
        }
        page(
            req,
            resp,
            "merchants.html",
            merchants=rows,
            next_after=next_after(rows, has_more),
            notice=done.get(query.done),
        )


class Suspend(Page):
    console_roles = {"POST": "admin"}
    accepts_form = True

    def on_post(self, req, resp, merchant_id: str) -> None:
        form = forms.read(forms.Suspension, req.context.body)
        transact(self._uow, merchant_admin.suspend, actor_of(req), merchant_id, reason=form.reason)
        raise redirect("/console/merchants?done=suspended")


class Resume(Page):
    console_roles = {"POST": "admin"}
    accepts_form = True

    def on_post(self, req, resp, merchant_id: str) -> None:
        forms.read(forms.Form, req.context.body)
        transact(self._uow, merchant_admin.resume, actor_of(req), merchant_id)
        raise redirect("/console/merchants?done=resumed")


class EraseCustomer(Page):
    console_roles = {"POST": "admin"}
    accepts_form = True

    def __init__(self, engine, vault):
        super().__init__(engine)
        self._vault = vault

    def on_post(self, req, resp) -> None:
        form = forms.read(forms.Erasure, req.context.body)
        if form.confirm != "yes":
            with self._uow() as uow:
                merchants.require_merchant(uow, form.merchant)  # a 404 page before asking
            page(req, resp, "confirm_erase.html", merchant=form.merchant, customer=form.customer)
            return

        def erase(uow):
            merchants.require_merchant(uow, form.merchant)
            return erasure.erase_customer(
                uow, self._vault, form.merchant, form.customer, actor_of(req)
            )

        transact(self._uow, erase)
        raise redirect("/console/merchants?done=erased")


class Audit(Page):
    console_roles = {"GET": "viewer"}

    def on_get(self, req, resp) -> None:
        query = forms.read(forms.AuditQuery, req.params)
        with self._uow() as uow:
            rows, has_more = operator_payments.list_audit(
                uow,
                actor=query.actor,
                action=query.action,
                target=query.target,
                limit=PAGE_SIZE,
                starting_after=query.starting_after,
            )
        filters = filters_of(query)
        page(
            req,
            resp,
            "audit.html",
            rows=rows,
            query=filters,
            next_after=next_after(rows, has_more),
        )
