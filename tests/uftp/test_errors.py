"""A RejectionReason read back into its reasons (spec/message-validation.md: several reasons
"separated by a semicolon")."""

from adapter.uftp.errors import Rejection, rejection_reasons


def test_a_rejection_reads_back_as_its_reasons() -> None:
    rejection = Rejection("Unknown congestion point", "ISP conflict")
    assert rejection_reasons(rejection.text) == ["Unknown congestion point", "ISP conflict"]


def test_a_peer_separating_without_spaces_or_leaving_empty_ones_is_read_alike() -> None:
    assert rejection_reasons("a;b ;; c ;") == ["a", "b", "c"]


def test_no_reason_is_no_reasons() -> None:
    assert rejection_reasons(None) == []
    assert rejection_reasons("") == []
