"""Campaign and flow messages, and how the sandbox's events are attributed to them.

Klaviyo marks an engagement event (received, opened, clicked...) with the message it
belongs to in ``$message`` (and ``$flow`` for a flow message), and a conversion with
the message that gets the credit in ``$attributed_message`` (``$attributed_flow``).
The Reporting API adds these up. The sandbox's rule is simple and deterministic, so
tests can recompute every report value from the events the API lists:

* Events of the engagement metrics below carry ``$message``: message
  ``pool(channel)[variant % len(pool)]``, where ``variant`` is the event's payload
  variant (see ``gen_events``) and the pool holds, sorted by id, the messages of sent
  campaigns of that channel and every flow message of that channel.
* Events of any other metric carry ``$attributed_message`` for two variants in three
  (``variant % 3 != 0``): message ``every_message[variant % n]``. A report counts them
  as conversions when their metric is the report's ``conversion_metric_id``.

Attribution ignores send time (Klaviyo's attribution windows are not modelled).
"""

from __future__ import annotations

import typing as t

from .util import B62, AffineCodec

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
SENT_STATUSES = ("Sent", "Sending", "Variations Sent")
#: Campaign channels as reports name them (``send_channel``).
SEND_CHANNEL = {"email": "email", "sms": "sms", "mobile_push": "push-notification"}
FLOW_MESSAGE_CHANNELS = ("email", "sms")  # each flow sends one email, then one SMS


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
    codec = _flow_message_codec(ds)
    flow_id = ds.flow_ids.id(k)
    return [Message(codec.id(k * 4 + m), channel, flow_id=flow_id) for m, channel in enumerate(FLOW_MESSAGE_CHANNELS)]


def _flow_message_codec(ds) -> AffineCodec:
    codec = ds.__dict__.get("_flow_message_codec")
    if codec is None:
        codec = ds.__dict__["_flow_message_codec"] = AffineCodec(ds.seed, "flow-message", B62, 6)
    return codec


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


def attribute(ds, metric_name: str, props: dict, variant: int) -> None:
    """Add the sandbox's attribution keys to a payload variant's properties (in place)."""
    channel = ENGAGEMENT_CHANNEL.get(metric_name)
    if channel:
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
