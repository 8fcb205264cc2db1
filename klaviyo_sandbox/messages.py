"""Campaign and flow messages and sign-up forms, and how the sandbox's events are attributed to them.

Klaviyo marks an engagement event (received, opened, clicked...) with the message it
belongs to in ``$message`` (and ``$flow`` for a flow message), and a conversion with
the message that gets the credit in ``$attributed_message`` (``$attributed_flow``).
The Reporting API adds these up. The messages are the ones the content endpoints serve
(``gen_content``): a campaign's ``campaign-messages`` and the flow messages of the
sending actions of every flow, so report groupings join to the content streams. The
sandbox's rule is simple and deterministic, so tests can recompute every report value
from the events the API lists:

* Events of the engagement metrics below carry ``$message``: message
  ``pool(channel)[variant % len(pool)]``, where ``variant`` is the event's payload
  variant (see ``gen_events``) and the pool holds, sorted by id, the messages of sent
  campaigns of that channel and every flow message of that channel.
* Events of the form metrics below carry ``form_id`` and ``form_version_id`` (the
  property Klaviyo's metric aggregates group by): form ``live_forms[variant % n]``,
  one of its versions; no message attribution.
* Events of any other metric carry ``$attributed_message`` for two variants in three
  (``variant % 3 != 0``): message ``every_message[variant % n]``. A report counts them
  as conversions when their metric is the report's ``conversion_metric_id``.

Attribution ignores send time (Klaviyo's attribution windows are not modelled).
"""

from __future__ import annotations

import typing as t

from . import gen_content

#: Engagement metric -> the channel of the messages it belongs to.
ENGAGEMENT_CHANNEL = {
    "Received Email": "email",
    "Opened Email": "email",
    "Clicked Email": "email",
    "Bounced Email": "email",
    "Marked Email as Spam": "email",
    "Unsubscribed": "email",
    "Received SMS": "sms",
    "Clicked SMS": "sms",
}
#: Sign-up form metrics (gen_catalog.METRIC_NAMES); their events name the form.
FORM_METRICS = ("Viewed Form", "Closed Form", "Submitted Form")
SENT_STATUSES = ("Sent", "Sending", "Variations Sent")
#: Campaign channels as reports name them (``send_channel``).
SEND_CHANNEL = {"email": "email", "sms": "sms", "mobile_push": "push-notification"}


class Message(t.NamedTuple):
    id: str
    channel: str  # email | sms | mobile_push
    campaign_id: str | None = None
    flow_id: str | None = None
    campaign_index: int | None = None


def campaign_messages(ds, k: int) -> list[Message]:
    rec = ds.small("campaign", k)
    channel = rec["_x"]["messages.channel"]
    return [
        Message(m["id"], channel, campaign_id=rec["id"], campaign_index=k)
        for m in rec["relationships"]["campaign-messages"]
    ]


def is_sent(ds, k: int) -> bool:
    return ds.small("campaign", k)["attributes"]["status"] in SENT_STATUSES


def flow_messages(ds, k: int) -> list[Message]:
    """The flow messages gen_content serves for flow k: one per sending action, two for an A/B test."""
    content, flow_id = ds.content, ds.flow_ids.id(k)
    found = []
    for slot in range(content.n_actions(k)):
        channel = gen_content.MESSAGE_ACTIONS.get(content.action_type(k, slot))
        if channel is None:
            continue  # not a sending action: it has no messages (n_flow_messages is 0)
        found += [Message(ref["id"], channel, flow_id=flow_id) for ref in content.flow_message_refs(k, slot)]
    return found


def every_message(ds) -> list[Message]:
    """Messages of sent campaigns and of every flow, sorted by id."""
    cached = ds.__dict__.get("_every_message")
    if cached is None:
        found = [m for k in range(ds.n_campaigns) if is_sent(ds, k) for m in campaign_messages(ds, k)]
        found += [m for k in range(ds.n_flows) for m in flow_messages(ds, k)]
        cached = ds.__dict__["_every_message"] = sorted(found)
    return cached


def pool(ds, channel: str) -> list[Message]:
    return [m for m in every_message(ds) if m.channel == channel]


def live_forms(ds) -> list[dict]:
    """The forms that collect sign-ups (every form if none is live), as gen_content serves them."""
    cached = ds.__dict__.get("_live_forms")
    if cached is None:
        forms = ds.content.records("forms")
        cached = ds.__dict__["_live_forms"] = [f for f in forms if f["attributes"]["status"] == "live"] or forms
    return cached


def attribute(ds, metric_name: str, props: dict, variant: int) -> None:
    """Add the sandbox's attribution keys to a payload variant's properties (in place)."""
    channel = ENGAGEMENT_CHANNEL.get(metric_name)
    if metric_name in FORM_METRICS:
        forms = live_forms(ds)
        form = forms[variant % len(forms)]
        versions = form["relationships"]["form-versions"]
        props["form_id"] = form["id"]
        props["form_version_id"] = versions[variant // len(forms) % len(versions)]["id"]
    elif channel:
        messages = pool(ds, channel)
        message = messages[variant % len(messages)]
        props["$message"] = message.id
        if message.flow_id:
            props["$flow"] = message.flow_id
    elif variant % 3:
        messages = every_message(ds)
        message = messages[variant % len(messages)]
        props["$attributed_message"] = message.id
        if message.flow_id:
            props["$attributed_flow"] = message.flow_id
