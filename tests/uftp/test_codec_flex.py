"""The codec for the messages between DSO and AGR: what their XSD types mean in Python.

The round trip of every type in every Version runs in test_codec.py (over all samples); this
file covers what is particular to flex messages: ISP rows and their default Duration,
decimals kept exact, ISP-Duration as a timedelta, attributes the Versions differ in, and
schema-valid values a receiver cannot hold.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from lxml import etree

from adapter.uftp import codec
from adapter.uftp.errors import IncompleteMessage, InvalidOutbound, InvalidXml
from adapter.uftp.messages import (
    AcceptedDisputed,
    AvailableRequested,
    DPrognosis,
    DPrognosisISP,
    DPrognosisResponse,
    FlexOffer,
    FlexOfferOptionISP,
    FlexOrder,
    FlexOrderISP,
    FlexRequest,
    FlexRequestISP,
    FlexReservationUpdate,
    FlexSettlement,
    FlexSettlementResponse,
    Metering,
    MeteringISP,
    MeteringProfileEnum,
    MeteringUnit,
    Result,
)

from . import samples
from .official import OFFICIAL_XSD_DIR, official_schema
from .samples import DRAFT, VERSIONS

version_params = pytest.mark.parametrize("version", VERSIONS, ids=samples.version_id)


def root_of(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def rewrite(data: bytes, old: str, new: str) -> bytes:
    """`data` with one attribute text replaced, as another implementation might write it."""
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


def decode_officially_valid(data: bytes) -> object:
    """Decode `data` after checking that the official schema accepts it too."""
    if OFFICIAL_XSD_DIR.is_dir():
        root = root_of(data)
        version = root.get("Version")
        assert version is not None
        schema = official_schema(version)
        assert schema.validate(root), schema.error_log
    return codec.decode(data)


# --- ISP rows ---------------------------------------------------------------------------------


def test_isp_duration_one_is_left_out_and_read_back_as_one() -> None:
    message = samples.make_flex_request()
    isps = root_of(codec.encode(message)).findall("ISP")
    assert [isp.get("Duration") for isp in isps] == ["68", "8", None, "19"]
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, FlexRequest)
    assert decoded.isps[2] == FlexRequestISP(77, 0, 0, 1, None)


def test_an_explicit_duration_of_one_reads_as_one() -> None:
    data = rewrite(
        codec.encode(samples.make_flex_request()), 'Start="77"', 'Start="77" Duration="1"'
    )
    decoded = codec.decode(data)
    assert isinstance(decoded, FlexRequest)
    assert decoded.isps[2].duration == 1


def test_disposition_absent_vs_present() -> None:
    decoded = codec.decode(codec.encode(samples.make_flex_request()))
    assert isinstance(decoded, FlexRequest)
    assert [isp.disposition for isp in decoded.isps] == [
        AvailableRequested.AVAILABLE,
        AvailableRequested.REQUESTED,
        None,
        None,
    ]
    assert type(decoded.isps[0].disposition) is AvailableRequested


def test_powers_beyond_64_bits_round_trip() -> None:
    # xs:integer is unbounded; so is int.
    huge = 10**30
    message = samples.make_flex_request(isps=(FlexRequestISP(1, -huge, huge, 96),))
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, FlexRequest)
    assert decoded.isps[0].max_power == huge


def test_integers_in_other_lexical_forms_are_read() -> None:
    data = codec.encode(samples.make_flex_offer())
    data = rewrite(data, 'Power="-250000" Start="69" Duration="8"', 'Power="-0250000" Start="+69"')
    decoded = decode_officially_valid(data)
    assert isinstance(decoded, FlexOffer)
    assert decoded.offer_options[0].isps == (FlexOfferOptionISP(69, -250_000, 1),)


# --- decimals ---------------------------------------------------------------------------------


def test_prices_keep_their_digits() -> None:
    decoded = codec.decode(codec.encode(samples.make_flex_offer()))
    assert isinstance(decoded, FlexOffer)
    prices = [option.price for option in decoded.offer_options]
    assert prices == [Decimal("1250.5000"), Decimal("-0.0001")]
    assert [str(p) for p in prices] == ["1250.5000", "-0.0001"]  # not 1250.5, not -1E-4


def test_a_price_in_exponent_form_is_written_as_a_plain_decimal() -> None:
    message = samples.make_flex_offer()
    option = dataclasses.replace(message.offer_options[0], price=Decimal("1.2E+3"))
    data = codec.encode(dataclasses.replace(message, offer_options=(option,)))
    assert root_of(data).find("OfferOption").get("Price") == "1200"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "value"),
    [(".5", Decimal("0.5")), ("+3.10", Decimal("3.10")), ("7.", Decimal(7)), ("-0", Decimal(0))],
)
def test_prices_in_other_lexical_forms_are_read(text: str, value: Decimal) -> None:
    data = rewrite(codec.encode(samples.make_flex_offer()), 'Price="1250.5000"', f'Price="{text}"')
    decoded = decode_officially_valid(data)
    assert isinstance(decoded, FlexOffer)
    assert decoded.offer_options[0].price == value


def test_an_int_price_is_written_as_the_integer() -> None:
    message = samples.make_flex_order(price=12, activation_factor=1)
    root = root_of(codec.encode(message))
    assert (root.get("Price"), root.get("ActivationFactor")) == ("12", None)
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, FlexOrder)
    assert decoded.price == Decimal(12) and type(decoded.price) is Decimal


def test_min_activation_factor_defaults_to_one() -> None:
    data = codec.encode(samples.make_flex_offer())
    options = root_of(data).findall("OfferOption")
    assert [o.get("MinActivationFactor") for o in options] == [None, "0.25"]
    decoded = codec.decode(data)
    assert isinstance(decoded, FlexOffer)
    assert [o.min_activation_factor for o in decoded.offer_options] == [
        Decimal("1.00"),
        Decimal("0.25"),
    ]


def test_a_price_with_five_decimals_is_refused_before_sending() -> None:
    message = samples.make_flex_offer()
    option = dataclasses.replace(message.offer_options[0], price=Decimal("0.00001"))
    with pytest.raises(InvalidOutbound, match="Price"):
        codec.encode(dataclasses.replace(message, offer_options=(option,)))


# --- ISP-Duration and instants ----------------------------------------------------------------


def test_isp_duration_is_a_timedelta_written_in_minutes() -> None:
    message = samples.make_flex_request(isp_duration=timedelta(minutes=30))
    data = codec.encode(message)
    assert root_of(data).get("ISP-Duration") == "PT30M"
    decoded = codec.decode(rewrite(data, 'ISP-Duration="PT30M"', 'ISP-Duration="PT1800S"'))
    assert isinstance(decoded, FlexRequest)
    assert decoded.isp_duration == timedelta(minutes=30)


@pytest.mark.parametrize(
    "duration",
    ["P1M", "P1Y", "P" + "9" * 12 + "D"],
    ids=["a-month", "a-year", "beyond-timedelta"],
)
def test_isp_duration_without_a_fixed_length_is_refused(duration: str) -> None:
    data = rewrite(codec.encode(samples.make_flex_request()), "PT15M", duration)
    with pytest.raises(InvalidXml, match="duration") as caught:
        decode_officially_valid(data)
    assert caught.value.status == 400


def test_expiration_keeps_its_offset() -> None:
    decoded = codec.decode(codec.encode(samples.make_flex_offer()))
    assert isinstance(decoded, FlexOffer)
    assert decoded.expiration_date_time == samples.EXPIRATION
    assert decoded.expiration_date_time.utcoffset() == timedelta(hours=2)


def test_3x_expiration_without_offset_is_read_as_utc() -> None:
    data = rewrite(
        codec.encode(samples.make_flex_request("3.0.0")),
        'ExpirationDateTime="2024-05-01T18:00:00+02:00"',
        'ExpirationDateTime="2024-05-01T18:00:00"',
    )
    decoded = decode_officially_valid(data)
    assert isinstance(decoded, FlexRequest)
    assert decoded.expiration_date_time == datetime(2024, 5, 1, 18, tzinfo=UTC)


def test_draft_expiration_without_offset_is_refused() -> None:
    data = rewrite(
        codec.encode(samples.make_flex_request(DRAFT)),
        'ExpirationDateTime="2024-05-01T18:00:00+02:00"',
        'ExpirationDateTime="2024-05-01T18:00:00"',
    )
    with pytest.raises(InvalidXml, match="ExpirationDateTime"):
        codec.decode(data)


def test_encode_refuses_a_naive_expiration() -> None:
    message = samples.make_flex_offer(expiration_date_time=datetime(2024, 5, 1, 18))
    with pytest.raises(IncompleteMessage, match="expiration_date_time"):
        codec.encode(message)


def test_revision_beyond_a_long_is_refused() -> None:
    data = rewrite(
        codec.encode(samples.make_flex_request()), 'Revision="3"', 'Revision="9223372036854775808"'
    )
    with pytest.raises(InvalidXml, match="Revision"):
        codec.decode(data)


# --- what the Versions differ in --------------------------------------------------------------


@pytest.mark.parametrize("unsolicited", [True, False])
def test_3_0_0_has_no_unsolicited_attribute(unsolicited: bool) -> None:
    message = samples.make_flex_offer("3.0.0", unsolicited=unsolicited)
    with pytest.raises(InvalidOutbound, match="Unsolicited"):
        codec.encode(message)
    # The same offer is a sound 3.1.0 and draft message.
    for version in ("3.1.0", DRAFT):
        moved = dataclasses.replace(message, version=version)
        assert codec.decode(codec.encode(moved)) == moved


@version_params
def test_unsolicited_offer_without_request_reference(version: str) -> None:
    unsolicited = None if version == "3.0.0" else True
    message = samples.make_flex_offer(
        version, unsolicited=unsolicited, flex_request_message_id=None
    )
    data = codec.encode(message)
    assert root_of(data).get("FlexRequestMessageID") is None
    assert codec.decode(data) == message


def test_unsolicited_absent_is_none() -> None:
    message = samples.make_flex_offer(DRAFT, unsolicited=None)
    data = codec.encode(message)
    assert root_of(data).get("Unsolicited") is None
    decoded = codec.decode(data)
    assert isinstance(decoded, FlexOffer)
    assert decoded.unsolicited is None  # the draft's default (false) is the reader's to apply


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"unsolicited": True}, "Unsolicited"),
        ({"service_type": "intraday"}, "ServiceType"),
        ({"flex_offer_message_id": None}, "FlexOfferMessageID"),
    ],
    ids=["unsolicited", "service-type", "no-offer-reference"],
)
def test_3_0_0_order_is_solicited_and_has_no_service_type(
    changes: dict[str, object], named: str
) -> None:
    """3.0.0 requires FlexOfferMessageID and knows neither Unsolicited nor ServiceType."""
    message = samples.make_flex_order("3.0.0", **changes)
    with pytest.raises(InvalidOutbound, match=named):
        codec.encode(message)
    moved = dataclasses.replace(message, version="3.1.0")
    assert codec.decode(codec.encode(moved)) == moved


@pytest.mark.parametrize("version", ["3.1.0", DRAFT])  # 3.0.0 has no unsolicited orders
def test_unsolicited_order_without_offer_reference(version: str) -> None:
    message = samples.make_flex_order(
        version, unsolicited=True, flex_offer_message_id=None, option_reference=None
    )
    assert codec.decode(codec.encode(message)) == message


def test_activation_factor_defaults_to_one() -> None:
    message = samples.make_flex_order(activation_factor=Decimal("1.0"))
    data = codec.encode(message)
    assert root_of(data).get("ActivationFactor") is None
    decoded = codec.decode(data)
    assert isinstance(decoded, FlexOrder)
    assert decoded.activation_factor == Decimal("1.00")
    assert samples.make_flex_order().activation_factor == Decimal("0.50")
    assert root_of(codec.encode(samples.make_flex_order())).get("ActivationFactor") == "0.50"


@pytest.mark.parametrize("factor", ["0", "1.01", "0.001"])
def test_activation_factor_outside_its_range_is_refused(factor: str) -> None:
    data = rewrite(
        codec.encode(samples.make_flex_order()),
        'ActivationFactor="0.50"',
        f'ActivationFactor="{factor}"',
    )
    with pytest.raises(InvalidXml, match="ActivationFactor"):
        codec.decode(data)


def test_order_and_reservation_update_isps_round_trip() -> None:
    order = codec.decode(codec.encode(samples.make_flex_order()))
    assert isinstance(order, FlexOrder)
    assert order.isps == (FlexOrderISP(69, -100_000, 4), FlexOrderISP(73, -50_000, 1))
    assert type(order.isps[0]) is FlexOrderISP
    update = codec.decode(codec.encode(samples.make_flex_reservation_update()))
    assert isinstance(update, FlexReservationUpdate)
    assert [(i.start, i.power, i.duration) for i in update.isps] == [
        (1, 0, 68),
        (69, -250_000, 8),
        (77, 0, 20),
    ]


def test_reservation_update_requires_its_contract() -> None:
    data = codec.encode(samples.make_flex_reservation_update())
    with pytest.raises(InvalidXml, match="ContractID"):
        codec.decode(rewrite(data, ' ContractID="contract-2024-001"', ""))


def test_d_prognosis_isp_numbers_are_plain_integers() -> None:
    """D-PrognosisISPType types Start and Duration xs:integer, not xs:positiveInteger as
    every other ISP does: zero and negative numbers pass the schema and are read as such."""
    message = samples.make_d_prognosis(isps=(DPrognosisISP(0, 10, -1), DPrognosisISP(-3, 0, 0)))
    data = codec.encode(message)
    assert decode_officially_valid(data) == message


@version_params
def test_d_prognosis_response_without_order_statuses(version: str) -> None:
    message = samples.make_d_prognosis_response(version, flex_order_statuses=())
    data = codec.encode(message)
    assert len(root_of(data)) == 0
    assert codec.decode(data) == message


def test_d_prognosis_response_order_statuses_round_trip() -> None:
    decoded = codec.decode(codec.encode(samples.make_d_prognosis_response()))
    assert isinstance(decoded, DPrognosisResponse)
    assert [(s.flex_order_message_id[:8], s.is_validated) for s in decoded.flex_order_statuses] == [
        ("2c3d4e5f", True),
        ("3D4E5F6A", False),
    ]
    data = rewrite(codec.encode(samples.make_d_prognosis_response()), '"true"', '"1"')
    again = codec.decode(data)
    assert isinstance(again, DPrognosisResponse)
    assert again.flex_order_statuses[0].is_validated is True


def test_d_prognosis_is_the_xml_name() -> None:
    data = codec.encode(samples.make_d_prognosis())
    assert root_of(data).tag == "D-Prognosis"
    assert isinstance(codec.decode(data), DPrognosis)


# --- settlement -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["3.0.0", "3.1.0"])
def test_3x_settlement_carries_result(version: str) -> None:
    """FlexSettlementType extends PayloadMessageResponseType in 3.x: Result is required."""
    message = samples.make_flex_settlement(
        version, result=Result.REJECTED, rejection_reason="a reason; of sorts"
    )
    data = codec.encode(message)
    assert (root_of(data).get("Result"), root_of(data).get("RejectionReason")) == (
        "Rejected",
        "a reason; of sorts",
    )
    assert decode_officially_valid(data) == message
    without_result = rewrite(
        codec.encode(samples.make_flex_settlement(version)), ' Result="Accepted"', ""
    )
    with pytest.raises(InvalidXml, match="Result"):
        codec.decode(without_result)


def test_draft_settlement_has_no_result() -> None:
    data = codec.encode(samples.make_flex_settlement(DRAFT))
    assert root_of(data).get("Result") is None
    decoded = codec.decode(data)
    assert isinstance(decoded, FlexSettlement)
    assert decoded.result is Result.ACCEPTED and decoded.rejection_reason is None
    for changes in ({"result": Result.REJECTED}, {"rejection_reason": ""}):
        with pytest.raises(InvalidOutbound, match=r"3\.x only"):
            codec.encode(samples.make_flex_settlement(DRAFT, **changes))


def test_settlement_defaults_are_left_out_and_read_back() -> None:
    message = samples.make_flex_settlement()
    root = root_of(codec.encode(message))
    orders = root.findall("FlexOrderSettlement")
    assert [o.get("Penalty") for o in orders] == ["100.0000", None]
    assert [i.get("PowerDeficiency") for i in orders[0]] == [None, "30000"]
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded, FlexSettlement)
    second = decoded.flex_order_settlements[1]
    assert second.penalty == 0 and second.order_reference is None
    assert second.isps[0].power_deficiency == 0
    contract_isps = decoded.contract_settlements[0].periods[0].isps
    assert contract_isps[0].requested_power is None
    assert contract_isps[1].ordered_power == -150_000


def test_settlement_children_keep_their_order_and_kind() -> None:
    message = samples.make_flex_settlement()
    root = root_of(codec.encode(message))
    assert [child.tag for child in root] == [
        "FlexOrderSettlement",
        "FlexOrderSettlement",
        "ContractSettlement",
    ]
    assert codec.decode(codec.encode(message)) == message


def test_settlement_needs_a_contract_settlement_as_the_xsd_says() -> None:
    """The spec page allows settlements without bilateral contracts (0..n); the XSD of every
    Version requires one ContractSettlement at least, and the schema decides."""
    with pytest.raises(InvalidOutbound, match="ContractSettlement"):
        codec.encode(samples.make_flex_settlement(contract_settlements=()))


@version_params
def test_rejected_settlement_response_without_status_is_not_schema_valid(version: str) -> None:
    """The XSD requires a FlexOrderSettlementStatus even in a Rejected response; the codec
    says so before sending rather than letting the peer answer 400."""
    message = samples.make_flex_settlement_response(
        version,
        result=Result.REJECTED,
        rejection_reason="Already settled",
        flex_order_settlement_statuses=(),
    )
    with pytest.raises(InvalidOutbound, match="FlexOrderSettlementStatus"):
        codec.encode(message)
    # Written without validation (as a participant sends a response), it has no statuses.
    assert len(root_of(codec.encode(message, validate=False))) == 0


def test_settlement_response_statuses_round_trip() -> None:
    decoded = codec.decode(codec.encode(samples.make_flex_settlement_response()))
    assert isinstance(decoded, FlexSettlementResponse)
    accepted, disputed = decoded.flex_order_settlement_statuses
    assert accepted.disposition is AcceptedDisputed.ACCEPTED and accepted.dispute_reason is None
    assert disputed.order_reference is None
    assert disputed.dispute_reason == 'delivered 1000 W, not "0"'


# --- metering ---------------------------------------------------------------------------------


def test_metering_values_are_exact_decimals() -> None:
    decoded = codec.decode(codec.encode(samples.make_metering()))
    assert isinstance(decoded, Metering)
    power, energy = decoded.profiles
    assert (power.profile_type, power.unit) == (MeteringProfileEnum.POWER, MeteringUnit.KW)
    assert type(power.profile_type) is MeteringProfileEnum
    assert [isp.value for isp in power.isps] == [Decimal("12.5"), Decimal("-3.25"), Decimal(0)]
    assert energy.isps[1] == MeteringISP(2, Decimal("0.000001"))
    assert str(energy.isps[1].value) == "0.000001"  # not a float's 1e-06


def test_metering_value_with_thirty_digits_is_kept() -> None:
    value = "123456789012345678901234.567890"
    data = rewrite(codec.encode(samples.make_metering()), 'Value="12.5"', f'Value="{value}"')
    decoded = decode_officially_valid(data)
    assert isinstance(decoded, Metering)
    assert str(decoded.profiles[0].isps[0].value) == value


def test_metering_currency_is_optional_and_the_ean_is_not_an_entity_address() -> None:
    message = samples.make_metering(currency=None)
    assert codec.decode(codec.encode(message)) == message
    with pytest.raises(InvalidOutbound, match="EAN"):
        codec.encode(samples.make_metering(ean="ean.871685900012636543"))


def test_metering_with_a_month_as_isp_duration_is_refused() -> None:
    data = rewrite(
        codec.encode(samples.make_metering()), 'ISP-Duration="PT15M"', 'ISP-Duration="P1M"'
    )
    with pytest.raises(InvalidXml, match="duration"):
        decode_officially_valid(data)


# --- structure --------------------------------------------------------------------------------


def test_a_flex_request_needs_an_isp() -> None:
    with pytest.raises(InvalidOutbound, match="ISP"):
        codec.encode(samples.make_flex_request(isps=()))


def test_an_offer_needs_an_option_with_an_isp() -> None:
    with pytest.raises(InvalidOutbound, match="OfferOption"):
        codec.encode(samples.make_flex_offer(offer_options=()))
    message = samples.make_flex_offer()
    empty = dataclasses.replace(message.offer_options[0], isps=())
    with pytest.raises(InvalidOutbound, match="ISP"):
        codec.encode(dataclasses.replace(message, offer_options=(empty,)))


def test_text_attributes_with_markup_round_trip() -> None:
    message = samples.make_flex_request(
        contract_id='a "contract" <1> & \t more', service_type="line\nbreak"
    )
    assert codec.decode(codec.encode(message)) == message
