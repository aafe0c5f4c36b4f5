"""Refusal-reason parsers on log text recorded from grpcio 1.85.3 and stunnel 5.68.

The live tests (test_tls_native_grpc, test_tls_sidecar) check the same parsers against fresh
output; these pin the recorded formats so a parser change cannot silently drop a reason.
"""

from __future__ import annotations

from k8s_fixtures.tls import reasons as r
from k8s_fixtures.tls.grpc_log import grpc_handshake_failures
from k8s_fixtures.tls.stunnel_log import stunnel_accepted_subjects, stunnel_handshake_failures

GRPC = """\
W1127 12:35:42.292079    6662 log.cc:102] Log level INFO is not suitable for production.
I1127 12:35:43.409586    6664 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: error:100000c0:SSL routines:OPENSSL_internal:PEER_DID_NOT_RETURN_A_CERTIFICATE: Invalid certificate verification context
I1127 12:35:44.217602    6665 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate
I1127 12:35:45.023198    6665 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired
I1127 12:35:29.161356    6346 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate is not yet valid
I1127 12:36:14.843900    6949 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification context
"""  # noqa: E501

STUNNEL = """\
2026.11.27 12:37:20 LOG5[ui]: stunnel 5.68 on x86_64-pc-linux-gnu platform
2026.11.27 12:37:20 LOG5[0]: Service [inbound-50051] accepted connection from 10.77.1.2:60864
2026.11.27 12:37:20 LOG3[0]: SSL_accept: ../ssl/statem/statem_srvr.c:3517: error:0A0000C7:SSL routines::peer did not return a certificate
2026.11.27 12:37:20 LOG5[0]: Connection reset/closed: 0 byte(s) sent to TLS, 0 byte(s) sent to socket
2026.11.27 12:37:21 LOG5[1]: Service [inbound-50051] accepted connection from 10.77.1.2:60884
2026.11.27 12:37:21 LOG3[1]: SSL_accept: ../ssl/record/rec_layer_s3.c:1601: error:0A000418:SSL routines::tlsv1 alert unknown ca
2026.11.27 12:37:21 LOG5[2]: Service [inbound-50051] accepted connection from 10.77.1.2:60888
2026.11.27 12:37:21 LOG4[2]: CERT: Pre-verification error: certificate has expired
2026.11.27 12:37:21 LOG4[2]: Rejected by CERT at depth=0: CN=fl-client.run.serviceaccount.identity.cluster.local
2026.11.27 12:37:21 LOG3[2]: SSL_accept: ../ssl/statem/statem_srvr.c:3530: error:0A000086:SSL routines::certificate verify failed
2026.11.27 12:37:22 LOG5[3]: Service [inbound-50051] accepted connection from 10.77.1.2:60908
2026.11.27 12:37:22 LOG4[3]: CERT: Pre-verification error: certificate is not yet valid
2026.11.27 12:37:22 LOG4[3]: Rejected by CERT at depth=0: CN=fl-client.run.serviceaccount.identity.cluster.local
2026.11.27 12:37:22 LOG3[3]: SSL_accept: ../ssl/statem/statem_srvr.c:3530: error:0A000086:SSL routines::certificate verify failed
2026.11.27 12:37:22 LOG5[4]: Service [inbound-50051] accepted connection from 10.77.1.2:60938
2026.11.27 12:37:22 LOG4[4]: CERT: Subject checks failed
2026.11.27 12:37:22 LOG4[4]: Rejected by CERT at depth=0: CN=rogue.run.serviceaccount.identity.cluster.local
2026.11.27 12:37:22 LOG3[4]: SSL_accept: ../ssl/statem/statem_srvr.c:3530: error:0A000086:SSL routines::certificate verify failed
2026.11.27 12:37:04 LOG5[5]: Service [inbound-50051] accepted connection from 10.77.0.2:37022
2026.11.27 12:37:04 LOG5[5]: Certificate accepted at depth=0: CN=fl-client.run.serviceaccount.identity.cluster.local
2026.11.27 12:37:04 LOG5[5]: Connection closed: 7 byte(s) sent to TLS, 2 byte(s) sent to socket
2026.11.27 12:41:23 LOG5[6]: Service [inbound-50051] accepted connection from 10.77.1.2:60990
2026.11.27 12:41:23 LOG4[6]: CERT: Pre-verification error: unable to get local issuer certificate
2026.11.27 12:41:23 LOG4[6]: Rejected by CERT at depth=0: CN=fl-client.ztfl-run.serviceaccount.identity.cluster.local
2026.11.27 12:41:23 LOG3[6]: SSL_accept: ../ssl/statem/statem_srvr.c:3530: error:0A000086:SSL routines::certificate verify failed
2026.11.27 12:37:22 LOG5[ui]: stunnel 5.68 on x86_64-pc-linux-gnu platform
2026.11.27 12:37:23 LOG5[0]: Service [inbound-50051] accepted connection from 10.77.1.9:1234
2026.11.27 12:37:23 LOG3[0]: INTERNAL ERROR: Uninitialized client session cache
2026.11.27 12:41:24 LOG3[0]: SSL_accept: ../ssl/record/ssl3_record.c:350: error:0A00010B:SSL routines::wrong version number
"""  # noqa: E501


def test_grpc_reasons() -> None:
    got = [f.reason for f in grpc_handshake_failures(GRPC)]
    assert got == [r.NO_CLIENT_CERT, r.UNKNOWN_CA, r.EXPIRED, r.NOT_YET_VALID, r.NOT_TLS]
    assert grpc_handshake_failures("I1127 ... started\n") == []


def test_stunnel_reasons_grouped_per_connection_and_restart() -> None:
    fails = stunnel_handshake_failures(STUNNEL)
    assert [f.reason for f in fails] == [r.NO_CLIENT_CERT, r.PEER_ALERT, r.EXPIRED,
                                         r.NOT_YET_VALID, r.IDENTITY_REJECTED, r.UNKNOWN_CA,
                                         r.NOT_TLS]
    assert fails[0].peer == "10.77.1.2:60864"
    assert fails[4].subject == "CN=rogue.run.serviceaccount.identity.cluster.local"
    assert fails[6].peer == "10.77.1.9:1234"  # connection 0 of the second run is its own
    assert stunnel_accepted_subjects(STUNNEL) == [
        "CN=fl-client.run.serviceaccount.identity.cluster.local"]


def test_stunnel_teardown_is_not_a_refusal_but_a_late_alert_is() -> None:
    server_side = """\
2026.11.27 12:40:00 LOG5[7]: Service [inbound-50051] accepted connection from 10.0.0.3:1
2026.11.27 12:40:00 LOG5[7]: Certificate accepted at depth=0: CN=fl-client.n.serviceaccount.identity.cluster.local
2026.11.27 12:40:01 LOG3[7]: SSL_read: ../ssl/record/rec_layer_s3.c:318: error:0A000126:SSL routines::unexpected eof while reading
"""  # noqa: E501
    assert stunnel_handshake_failures(server_side) == []
    assert len(stunnel_accepted_subjects(server_side)) == 1
    client_side = """\
2026.11.27 12:37:20 LOG5[0]: Service [outbound] accepted connection from 10.77.1.2:60854
2026.11.27 12:37:20 LOG3[0]: INTERNAL ERROR: Uninitialized client session cache
2026.11.27 12:37:20 LOG5[0]: Certificate accepted at depth=0: CN=fl-server.run.serviceaccount.identity.cluster.local
2026.11.27 12:37:20 LOG3[0]: SSL_read: ../ssl/record/rec_layer_s3.c:1601: error:0A00045C:SSL routines::tlsv13 alert certificate required
"""  # noqa: E501
    assert [f.reason for f in stunnel_handshake_failures(client_side)] == [r.PEER_ALERT]
    assert stunnel_accepted_subjects(client_side) == []
