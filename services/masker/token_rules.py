"""Known credential formats, each naming the scanner rule it comes from.

The table is small on purpose: formats with a fixed, distinctive prefix, so a
hit in page text is a credential, not a word. Every pattern matches a bounded
number of characters (``MAX_TOKEN_CHARS``) and starts only at its literal
``hint``, which a C-level ``in`` test checks before the regex runs.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

MAX_TOKEN_CHARS: Final = 8192


@dataclass(frozen=True, slots=True)
class TokenRule:
    """One credential format: ``pattern``'s group ``secret`` (or the whole match) is masked."""

    name: str
    source: str  # the scanner rule this follows (gitleaks id, detect-secrets plugin, Relay rule)
    hints: tuple[str, ...]  # literals one of which every match contains
    pattern: re.Pattern[str]


def _rule(name: str, source: str, hint: str, pattern: str, *, fold: bool = False) -> TokenRule:
    """``hint``: a literal, or ``|``-separated literals; ``fold``: in any of 3 casings."""
    hints = hint.split("|")
    if fold:
        hints = [v for h in hints for v in (h, h.upper(), h.capitalize())]
    return TokenRule(name, source, tuple(dict.fromkeys(hints)), re.compile(pattern))


TOKEN_RULES: Final[tuple[TokenRule, ...]] = (
    _rule(
        "jwt", "gitleaks:jwt", "eyJ",
        r"\beyJ[A-Za-z0-9_-]{8,2048}\.eyJ[A-Za-z0-9_-]{2,4096}\.[A-Za-z0-9_-]{0,1024}",
    ),
    _rule("aws_access_key", "gitleaks:aws-access-token", "AKIA|ASIA|ABIA|ACCA|A3T",
          r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    _rule("github_token", "gitleaks:github-pat,github-oauth,github-app-token",
          "ghp_|gho_|ghu_|ghs_|ghr_",
          r"\bgh[pousr]_[A-Za-z0-9]{36,255}"),
    _rule("github_fine_grained_token", "gitleaks:github-fine-grained-pat", "github_pat_",
          r"\bgithub_pat_[A-Za-z0-9_]{82}"),
    _rule("slack_token", "gitleaks:slack-bot-token,slack-user-token", "xox",
          r"\bxox[baprse]-[A-Za-z0-9-]{10,250}"),
    # gitleaks' stripe-access-token is sk_/rk_; publishable pk_ keys too (a
    # "stripe_pk" parameter): public by design, but still an account identifier.
    _rule("stripe_key", "gitleaks:stripe-access-token", "_live_|_prod_",
          r"\b(?:sk|rk|pk)_(?:live|prod)_[A-Za-z0-9]{10,250}"),
    _rule("stripe_key", "gitleaks:stripe-access-token", "_test_",
          r"\b(?:sk|rk|pk)_test_[A-Za-z0-9]{10,250}"),
    # Stripe's webhook signing secrets (whsec_ + 32+ base62; not in gitleaks'
    # table, in trufflehog's Stripe detector family): the part after the prefix.
    _rule("stripe_webhook_secret", "vendor:stripe-webhook-signing-secret", "whsec_",
          r"\bwhsec_(?P<secret>[A-Za-z0-9]{24,250})"),
    _rule("slack_webhook", "gitleaks:slack-webhook-url", "hooks.slack.com",
          r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9+/]{20,100})"),
    _rule("slack_app_token", "gitleaks:slack-app-token", "xapp-",
          r"\bxapp-\d-[A-Z0-9]{1,20}-\d{1,20}-[a-z0-9]{10,100}"),
    _rule("gitlab_token", "gitleaks:gitlab-pat,gitlab-ptt,gitlab-rrt", "glpat-|glptt-|GR1348941",
          r"\b(?:glpat-[A-Za-z0-9_-]{20,100}|glptt-[0-9a-f]{40}|GR1348941[A-Za-z0-9_-]{20})"),
    _rule("npm_token", "gitleaks:npm-access-token", "npm_",
          r"\bnpm_[A-Za-z0-9]{36}"),
    _rule("pypi_token", "gitleaks:pypi-upload-token", "pypi-AgEIcHlwaS5vcmc",
          r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1000}"),
    _rule("sendgrid_key", "gitleaks:sendgrid-api-token", "SG.",
          r"\bSG\.[A-Za-z0-9_-]{20,24}\.[A-Za-z0-9_-]{39,50}"),
    _rule("openai_key", "gitleaks:openai-api-key", "sk-proj-|sk-svcacct-|sk-admin-|T3BlbkFJ",
          r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,300}"
          r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})"),
    _rule("anthropic_key", "gitleaks:anthropic-api-key,anthropic-admin-api-key", "sk-ant-",
          r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{20,200}"),
    _rule("shopify_token", "gitleaks:shopify-access-token,shopify-shared-secret",
          "shpat_|shpca_|shppa_|shpss_", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    _rule("twilio_key", "gitleaks:twilio-api-key", "SK", r"\bSK[0-9a-fA-F]{32}\b"),
    _rule("mailgun_key", "gitleaks:mailgun-private-api-token", "key-",
          r"\bkey-[a-f0-9]{32}\b"),
    _rule("square_token", "gitleaks:square-access-token,square-secret", "sq0atp-|sq0csp-|EAAA",
          r"\b(?:sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43}|EAAA[A-Za-z0-9_-]{60})"),
    _rule("digitalocean_token", "gitleaks:digitalocean-pat,digitalocean-access-token",
          "dop_v1_|doo_v1_|dor_v1_", r"\bdo[opr]_v1_[a-f0-9]{64}"),
    _rule("hashicorp_vault_token", "gitleaks:vault-service-token,vault-batch-token", "hvs.|hvb.",
          r"\bhv[sb]\.[A-Za-z0-9_-]{24,200}"),
    _rule("sentry_token", "gitleaks:sentry-org-token,sentry-user-token", "sntrys_|sntryu_",
          r"\bsntry[su]_[A-Za-z0-9_=+/]{40,300}"),
    _rule("postman_key", "gitleaks:postman-api-token", "PMAK-",
          r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    _rule("linear_key", "gitleaks:linear-api-key", "lin_api_", r"\blin_api_[A-Za-z0-9]{40}"),
    _rule("age_secret_key", "gitleaks:age-secret-key", "AGE-SECRET-KEY-1",
          r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    _rule("telegram_bot_token", "gitleaks:telegram-bot-api-token", ":A",
          r"\b\d{5,16}:A[A-Za-z0-9_-]{34}(?![A-Za-z0-9_-])"),
    _rule("mapbox_token", "gitleaks:mapbox-api-token", "sk.eyJ|pk.eyJ",
          r"\b[ps]k\.eyJ[A-Za-z0-9_-]{20,2048}\.[A-Za-z0-9_-]{20,256}"),
    _rule("google_api_key", "gitleaks:gcp-api-key", "AIza", r"\bAIza[0-9A-Za-z_-]{35}"),
    _rule(
        "private_key", "gitleaks:private-key", "PRIVATE KEY",
        # the body up to its END line (or 8000 characters of a truncated key)
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY[ A-Z]{0,10}-----"
        r"(?:[A-Za-z0-9+/=\s:,]|-(?!----END)){0,8000}"
        r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY[ A-Z]{0,10}-----)?",
    ),
    _rule(
        "bearer", "relay:@bearer", "bearer",
        r"(?i:\bbearer)\s{1,4}(?P<secret>[A-Za-z0-9._~+/-]{8,4096}={0,2})", fold=True,
    ),
    _rule(
        "basic_auth", "detect-secrets:BasicAuthDetector", "basic",
        r"(?i:\bbasic)\s{1,4}(?P<secret>[A-Za-z0-9+/]{8,2048}={0,2})(?![A-Za-z0-9+/=])", fold=True,
    ),
    _rule(
        "url_credentials", "detect-secrets:BasicAuthDetector", "://",
        r"\b[A-Za-z][A-Za-z0-9+.-]{0,19}://[^\s/?#@:\"'<>]{1,256}:(?P<secret>[^\s/?#@\"'<>]{1,256})@",
    ),
)


def _basic_credentials(candidate: str) -> bool:
    """A ``Basic`` value is a credential only if it decodes to printable ``user:password``."""
    try:
        decoded = base64.b64decode(candidate + "=" * (-len(candidate) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    text = decoded.decode("utf-8", "replace")
    return ":" in text and text.isprintable()


def token_spans(value: str) -> list[tuple[str, tuple[int, int]]]:
    """(rule name, span to mask) of every known credential format in ``value``."""
    found: list[tuple[str, tuple[int, int]]] = []
    for rule in TOKEN_RULES:
        if not any(hint in value for hint in rule.hints):
            continue
        for match in rule.pattern.finditer(value):
            if "secret" in rule.pattern.groupindex:
                secret = match.group("secret")
                if rule.name == "basic_auth" and not _basic_credentials(secret):
                    continue
                if rule.name == "bearer" and secret.isalpha():
                    continue  # "Bearer authentication": a word, not a token
                found.append((rule.name, match.span("secret")))
            else:
                found.append((rule.name, match.span()))
    return found


# Literals at least one of which every token match contains (a cheap gate).
TOKEN_HINTS: Final[tuple[str, ...]] = tuple(
    dict.fromkeys(hint for rule in TOKEN_RULES for hint in rule.hints)
)
