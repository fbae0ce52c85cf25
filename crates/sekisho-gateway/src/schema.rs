//! JSON Schema (draft 2020-12) of the gateway configuration file, so editors
//! (yaml-language-server) complete keys and underline mistakes while IT officers type.
//!
//! Committed at `schema/config.schema.json` (refresh with
//! `sekisho schema config > schema/config.schema.json`); a test fails when the committed
//! file differs from what this module generates, and checks that the example and test
//! configurations validate against it.
//!
//! The schema follows the loader (`config.rs`, `identity_config.rs`, `audit.rs` and the
//! posture crate's `DevicesConfig`): the same keys, required keys, enums, ranges and
//! defaults, and `additionalProperties: false` wherever the loader rejects unknown keys.
//! What only the loader can know (files exist, policy and zone names resolve, zones do not
//! overlap, routes do not cross) is left to `sekisho check`.

use serde_json::{Map, Value, json};

/// Durations read by the gateway's own loader (humantime): `30s`, `15m`, `1h 30m`, `7d`.
const DURATION: &str = "^\\s*([0-9]+\\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\\s*)+$";

/// A humantime duration that is zero in every part (`0s`, `0m 0s`): refused where a
/// duration must be longer than zero.
const ZERO_DURATION: &str = "^[\\s0]*[a-zA-Zµ]+([\\s0]+[a-zA-Zµ]+)*\\s*$";

/// Durations of the `devices:` section (jiff): `72h`, `15m`, `90 seconds`, `1h 30m` or
/// ISO 8601 `PT72H`. Units up to hours (a day is not always 24 hours to jiff).
const POSTURE_DURATION: &str = "^\\s*[+-]?\\s*(P(T?[0-9]+([.,][0-9]+)?[HMS])+|([0-9]+([.,][0-9]+)?\\s*(hours|hour|hrs|hr|h|minutes|minute|mins|min|m|seconds|second|secs|sec|s|milliseconds|millisecond|millis|milli|msecs|msec|ms|microseconds|microsecond|micros|micro|usecs|usec|us|µs|nanoseconds|nanosecond|nanos|nano|nsecs|nsec|ns),?\\s*)+)$";

/// An IP address with a port: `127.0.0.1:8443`, `0.0.0.0:443`, `[::1]:8443`.
const SOCKET_ADDR: &str = "^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|\\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[0-9]+)?\\]):([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// An IP address: `127.0.10.1`, `fd00::1`.
const IP_ADDR: &str = "^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$";

/// An IP network (`127.0.10.0/24`, `fd00::/64`) or a single address.
const CIDR: &str = "^((((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(/(3[0-2]|[12]?[0-9]))?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$";

/// `host:port` where the host may be a name (syslog server).
const HOST_PORT: &str = "^(\\[[0-9A-Fa-f:.]+\\]|[^\\s:\\[\\]/]+):[0-9]{1,5}$";

/// A host name or a wildcard over one label: `portal.example.lg.jp`, `*.example.lg.jp`.
const HOST_PATTERN: &str = "^\\s*(\\*\\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\\.?\\s*$";

/// An upstream: scheme, host and port only.
const UPSTREAM: &str = "^https?://(\\[[0-9A-Fa-f:.]+\\]|[^\\s/@:\\[\\]]+)(:[0-9]{1,5})?/?$";

/// An http(s) URL (plain http only for a provider on this machine; the loader checks).
const URL: &str = "^https?://[^\\s]+$";

/// An HTTP header name (RFC 9110 token).
const HEADER_NAME: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// English and Japanese in one description: editors show both on hover.
fn d(en: &str, ja: &str) -> String {
    format!("{en}\n\n{ja}")
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn string(en: &str, ja: &str) -> Value {
    json!({"description": d(en, ja), "type": "string", "minLength": 1})
}

/// Text the loader also accepts as a YAML number (`client_id: 123456`).
fn text(en: &str, ja: &str) -> Value {
    json!({"description": d(en, ja), "type": ["string", "number"], "minLength": 1})
}

fn path(en: &str, ja: &str) -> Value {
    json!({
        "description": d(&format!("{en} Relative paths are relative to the configuration file's directory."),
                         &format!("{ja} 相対パスは設定ファイルのディレクトリが基準です。")),
        "type": "string",
        "minLength": 1
    })
}

fn paths(en: &str, ja: &str) -> Value {
    json!({
        "description": d(&format!("{en} Relative paths are relative to the configuration file's directory."),
                         &format!("{ja} 相対パスは設定ファイルのディレクトリが基準です。")),
        "type": "array",
        "items": {"type": "string", "minLength": 1}
    })
}

fn boolean(en: &str, ja: &str, default: bool) -> Value {
    json!({"description": d(en, ja), "type": "boolean", "default": default})
}

fn duration(en: &str, ja: &str, default: &str) -> Value {
    json!({
        "description": d(en, ja),
        "type": "string",
        "pattern": DURATION,
        "not": {"pattern": ZERO_DURATION},
        "default": default,
        "examples": ["30s", "15m", "8h", "7d"]
    })
}

fn posture_duration(en: &str, ja: &str, default: &str) -> Value {
    json!({
        "description": d(en, ja),
        "type": "string",
        "pattern": POSTURE_DURATION,
        "default": default,
        "examples": ["72h", "15m", "90s", "PT72H"]
    })
}

/// A list, or a single value read as a list of one (the loader's `string_list`).
fn one_or_many(en: &str, ja: &str, item: Value) -> Value {
    json!({
        "description": d(en, ja),
        "oneOf": [item.clone(), {"type": "array", "items": item}]
    })
}

fn object(en: &str, ja: &str, properties: Value) -> Value {
    json!({
        "description": d(en, ja),
        "type": "object",
        "additionalProperties": false,
        "properties": properties
    })
}

fn uint(en: &str, ja: &str, min: u64, max: Option<u64>, default: u64) -> Value {
    let mut v =
        json!({"description": d(en, ja), "type": "integer", "minimum": min, "default": default});
    if let Some(max) = max {
        v["maximum"] = json!(max);
    }
    v
}

fn logging() -> Value {
    object(
        "Log output of the gateway.",
        "ゲートウェイのログ出力。",
        json!({
            "format": {
                "description": d("`text` for people, `json` (one object per line) for the log platform.",
                                 "`text` は人が読む形式、`json` は 1 行 1 オブジェクトでログ基盤向け。"),
                "enum": ["text", "json"],
                "default": "text"
            },
            "level": with(string(
                "A tracing filter directive, such as `info` or `sekisho_gateway=debug,info`.",
                "ログレベル (tracing のフィルタ指定)。例: `info`、`sekisho_gateway=debug,info`。"),
                json!({"default": "info", "examples": ["info", "warn", "sekisho_gateway=debug,info"]}))
        }),
    )
}

fn admin() -> Value {
    object(
        "The admin endpoint: /healthz (liveness), /readyz (readiness) and /metrics (Prometheus). Never served on the public listeners; keep it on loopback or the monitoring network.",
        "管理用エンドポイント: /healthz (生存)、/readyz (準備完了)、/metrics (Prometheus)。公開リスナーでは提供されません。ループバックか監視用ネットワークに限定してください。",
        json!({
            "listen": {
                "description": d("IP address and port of the admin endpoint (no host names).",
                                 "管理用エンドポイントの IP アドレスとポート (ホスト名は不可)。"),
                "type": "string",
                "pattern": SOCKET_ADDR,
                "default": "127.0.0.1:9900"
            }
        }),
    )
}

fn limits() -> Value {
    object(
        "Limits that protect the gateway from slow or oversized clients.",
        "遅いクライアントや過大なリクエストからゲートウェイを守る上限値。",
        json!({
            "max_header_bytes": uint(
                "Largest request header section in bytes; larger requests get 431.",
                "リクエストヘッダ部の最大バイト数。超えると 431 を返します。",
                8192, Some(1_048_576), 32768),
            "max_headers": uint(
                "Most headers in one request.",
                "1 リクエストあたりの最大ヘッダ数。",
                16, Some(1000), 100),
            "header_read_timeout": duration(
                "A client must send its whole header section within this time (slowloris protection).",
                "クライアントはこの時間内にヘッダ部を送り切る必要があります (slowloris 対策)。",
                "10s"),
            "max_concurrent_streams": uint(
                "Most concurrent HTTP/2 streams per connection.",
                "HTTP/2 の 1 接続あたりの最大同時ストリーム数。",
                1, Some(1000), 100),
            "drain_timeout": duration(
                "How long SIGTERM waits for in-flight requests before closing connections. Give the service manager a longer stop timeout.",
                "SIGTERM 受信後、処理中のリクエストを待つ時間。systemd や Kubernetes の停止猶予はこれより長くしてください。",
                "30s")
        }),
    )
}

fn zone() -> Value {
    let mut z = object(
        "A zone: one side of the network (三層の対策). Every listener and route belongs to exactly one zone.",
        "ゾーン: ネットワークの一つの系 (三層の対策)。リスナーとルートはいずれか一つのゾーンに属します。",
        json!({
            "description": {
                "description": d("What this zone is, for people.", "このゾーンの説明 (人が読むためのもの)。"),
                "type": ["string", "number"]
            },
            "egress": with(object(
                "Where upstreams of this zone may live. Checked at load and again on every resolved address at connect time.",
                "このゾーンの接続先が置かれるネットワーク。読み込み時と、接続ごとに名前解決したアドレスで検査されます。",
                json!({
                    "allow": one_or_many(
                        "Networks (CIDR) that upstream addresses must be inside. Two zones must not overlap.",
                        "接続先アドレスが含まれなければならないネットワーク (CIDR)。ゾーン同士で重なってはいけません。",
                        json!({"type": "string", "pattern": CIDR})),
                    "deny": one_or_many(
                        "Networks (CIDR) that upstream addresses must be outside.",
                        "接続先アドレスが含まれてはいけないネットワーク (CIDR)。",
                        json!({"type": "string", "pattern": CIDR})),
                    "bind": {
                        "description": d("Local source address for connections to this zone's upstreams (e.g. the LGWAN-side interface).",
                                         "このゾーンの接続先へ接続するときの送信元アドレス (例: LGWAN 側のインターフェース)。"),
                        "type": "string",
                        "pattern": IP_ADDR
                    }
                })),
                json!({"required": ["allow"]})),
            "require": string(
                "A policy AND-ed with every route policy in this zone (the zone floor). A route cannot weaken it.",
                "このゾーンのすべてのルートのポリシーに AND で加わるポリシー (ゾーンの下限)。ルート側で緩めることはできません。"),
            "isolated": boolean(
                "No route may reach this zone at all (e.g. the individual-number side). A route whose upstream falls into it stops the gateway from starting.",
                "どのルートからも到達させないゾーン (例: マイナンバー利用事務系)。接続先がこのゾーンに入るルートがあると起動しません。",
                false),
            "response": object(
                "Response controls applied to every response from this zone.",
                "このゾーンからのすべてのレスポンスに適用する制御。",
                json!({
                    "cache_control": with(string(
                        "Cache-Control header set on every response (e.g. `no-store` on the LGWAN side).",
                        "すべてのレスポンスに付ける Cache-Control ヘッダ (例: LGWAN 側では `no-store`)。"),
                        json!({"examples": ["no-store"]}))
                }))
        }),
    );
    z["required"] = json!(["egress"]);
    z
}

fn listener() -> Value {
    let mut l = object(
        "A TLS listener. Listeners are not reloaded: changing one needs a restart.",
        "TLS リスナー。リスナーの変更は再読み込みでは反映されず、再起動が必要です。",
        json!({
            "zone": string("The zone this listener belongs to.", "このリスナーが属するゾーン。"),
            "listen": {
                "description": d("IP address and port to listen on (no host names).", "待ち受ける IP アドレスとポート (ホスト名は不可)。"),
                "type": "string",
                "pattern": SOCKET_ADDR,
                "examples": ["0.0.0.0:443", "127.0.0.1:8443", "[::]:443"]
            },
            "tls": object(
                "Server certificates. The right one is chosen by SNI.",
                "サーバー証明書。SNI で選ばれます。",
                json!({
                    "certificates": {
                        "description": d("Certificate and key pairs (PEM).", "証明書と秘密鍵の組 (PEM)。"),
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["cert", "key"],
                            "properties": {
                                "cert": path("PEM certificate chain.", "PEM 形式の証明書チェーン。"),
                                "key": path("PEM private key.", "PEM 形式の秘密鍵。")
                            }
                        }
                    }
                })),
            "plaintext": boolean(
                "Serve plain HTTP without TLS. For tests only; a listener is either `plaintext: true` or has `tls`.",
                "TLS なしの平文 HTTP。試験専用です。`plaintext: true` か `tls` のどちらか一方を指定します。",
                false)
        }),
    );
    l["required"] = json!(["zone", "listen"]);
    l["properties"]["tls"]["required"] = json!(["certificates"]);
    l["oneOf"] = json!([
        {"required": ["tls"], "properties": {"plaintext": {"const": false}}},
        {"required": ["plaintext"], "properties": {"plaintext": {"const": true}}, "not": {"required": ["tls"]}}
    ]);
    l
}

fn route() -> Value {
    let mut r = object(
        "A route: host and path prefix → upstreams, decided by a policy. Nothing is open by omission: name a `policy` or write `access: public`.",
        "ルート: ホストとパスの接頭辞 → 接続先。ポリシーで判定します。省略による公開はありません: `policy` を指定するか `access: public` と書きます。",
        json!({
            "zone": string("The zone of the route's upstreams.", "このルートの接続先が属するゾーン。"),
            "kind": {
                "description": d(
                    "`proxy` (default) stays in its zone. `screen_transfer` (画面転送, to a virtual browser or VDI web client) may be served on a listener of another zone; requests and responses carrying files are refused. (`sanitized_upload` is reserved and not supported by this version.)",
                    "`proxy` (既定) は自ゾーン内のみ。`screen_transfer` (画面転送: 仮想ブラウザや VDI の Web クライアント) は他ゾーンのリスナーで提供でき、ファイルを運ぶリクエスト・レスポンスは拒否されます。(`sanitized_upload` は予約済みで、この版では使えません。)"),
                "enum": ["proxy", "screen_transfer"],
                "default": "proxy"
            },
            "listeners": one_or_many(
                "Listeners that serve this route. Default: every listener of the route's zone. Only `screen_transfer` routes may name a listener of another zone.",
                "このルートを提供するリスナー。既定: ルートのゾーンのすべてのリスナー。他ゾーンのリスナーを指定できるのは `screen_transfer` のみ。",
                json!({"type": "string", "minLength": 1})),
            "hosts": one_or_many(
                "Host names this route answers, or `*.example.lg.jp` for one label under a domain.",
                "このルートが応答するホスト名。`*.example.lg.jp` でドメイン直下の 1 ラベルに一致します。",
                json!({"type": "string", "pattern": HOST_PATTERN})),
            "path_prefix": {
                "description": d("Path prefix, matched on segment boundaries (`/audit` covers `/audit/x`, not `/auditor`). The longest prefix wins.",
                                 "パスの接頭辞。セグメント単位で一致します (`/audit` は `/audit/x` に一致し、`/auditor` には一致しません)。最長一致。"),
                "type": ["string", "number"],
                "default": "/"
            },
            "strip_prefix": boolean(
                "Remove the path prefix before forwarding (`/app/x` → `/x`).",
                "転送前にパスの接頭辞を取り除きます (`/app/x` → `/x`)。",
                false),
            "upstreams": {
                "description": d("Upstream servers: scheme, host and port only (`http://127.0.10.11:8080`). IP literals must lie in the zone's `egress.allow`.",
                                 "接続先サーバー: スキーム・ホスト・ポートのみ (`http://127.0.10.11:8080`)。IP アドレスはゾーンの `egress.allow` 内でなければなりません。"),
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "pattern": UPSTREAM}
            },
            "upstream_tls": with(object(
                "TLS to `https` upstreams.",
                "`https` の接続先への TLS。",
                json!({
                    "ca": path("PEM file of the CA certificates that sign the upstream's certificate.", "接続先の証明書を発行した CA 証明書の PEM ファイル。"),
                    "server_name": string("Name to verify in the upstream certificate (default: the upstream host).", "接続先証明書で検証する名前 (既定: 接続先のホスト)。")
                })),
                json!({"required": ["ca"]})),
            "upstream_http2": boolean(
                "Speak HTTP/2 (prior knowledge) to the upstream.",
                "接続先と HTTP/2 (prior knowledge) で通信します。",
                false),
            "access": {
                "description": d("`public`: anyone may reach the route (still audited and measured). `policy` needs `policy: <name>`.",
                                 "`public`: 誰でも到達できます (監査ログとメトリクスは記録されます)。`policy` の場合は `policy: <名前>` が必要です。"),
                "enum": ["public", "policy"]
            },
            "policy": string(
                "The policy that decides (AND-ed with the zone's `require`).",
                "判定に使うポリシー名 (ゾーンの `require` と AND されます)。"),
            "client_certificate": {
                "description": d("Ask browsers for a device certificate on this route's hosts. Default: `request` for routes with a policy, `off` for public routes.",
                                 "このルートのホストでブラウザに端末証明書を要求するか。既定: ポリシーのあるルートは `request`、公開ルートは `off`。"),
                "enum": ["request", "off"]
            },
            "timeouts": object(
                "Upstream timeouts.",
                "接続先のタイムアウト。",
                json!({
                    "connect": duration("Connecting to the upstream.", "接続先への接続。", "5s"),
                    "response_header": duration("From sending the request to receiving the response head.", "リクエスト送信からレスポンスヘッダ受信まで。", "60s"),
                    "idle": duration("Longest the gateway waits for the next piece of a body, in either direction (the client's upload, the upstream's response).", "ボディの次のデータを待つ最大時間 (双方向: 利用者からの送信、接続先からの応答)。", "5m")
                }))
        }),
    );
    r["required"] = json!(["zone", "hosts", "upstreams"]);
    r["anyOf"] = json!([
        {"required": ["policy"]},
        {"required": ["access"], "properties": {"access": {"const": "public"}}}
    ]);
    r["not"] =
        json!({"required": ["access", "policy"], "properties": {"access": {"const": "public"}}});
    r
}

fn devices() -> Value {
    let mut trust = object(
        "Device certificates: the municipality's device CA, its CRLs, and where the device ID is read from.",
        "端末証明書: 自治体の端末 CA、その CRL、端末 ID の取り出し方。",
        json!({
            "ca_files": paths("PEM files with the device CA certificates (trust anchors). Required.",
                              "端末 CA 証明書の PEM ファイル (トラストアンカー)。必須。"),
            "crl_files": paths("CRL files (PEM or DER), usually one per device CA; reloaded when they change.",
                               "CRL ファイル (PEM または DER)。通常は端末 CA ごとに 1 つ。変更時に再読み込みされます。"),
            "device_id": {
                "description": d("Where the device ID is read from. Default: the SAN URI with prefix `urn:sekisho:device:`.",
                                 "端末 ID の取り出し方。既定: 接頭辞 `urn:sekisho:device:` の SAN URI。"),
                "type": "object",
                "required": ["from"],
                "default": {"from": "san_uri", "prefix": "urn:sekisho:device:"},
                "oneOf": [
                    {"additionalProperties": false, "properties": {
                        "from": {"const": "san_uri", "description": d("The first SAN URI that starts with `prefix`; the rest is the ID.", "`prefix` で始まる最初の SAN URI。残りが ID。")},
                        "prefix": {"type": "string", "default": "urn:sekisho:device:"}}},
                    {"additionalProperties": false, "properties": {
                        "from": {"const": "san_dns", "description": d("The first SAN DNS name that ends with `suffix` (if set); the part before it is the ID.", "`suffix` (指定時) で終わる最初の SAN DNS 名。その前の部分が ID。")},
                        "suffix": {"type": ["string", "null"]}}},
                    {"additionalProperties": false, "properties": {
                        "from": {"const": "subject_cn", "description": d("The subject common name.", "サブジェクトの CN。")}}},
                    {"additionalProperties": false, "properties": {
                        "from": {"const": "serial", "description": d("The certificate serial number, lowercase hex.", "証明書のシリアル番号 (小文字 16 進)。")}}}
                ]
            },
            "allow_unknown_revocation_status": boolean(
                "Accept devices whose issuing CA has no CRL configured (only relevant when `crl_files` is set).",
                "CRL が設定されていない CA が発行した端末を受け入れる (`crl_files` 指定時のみ意味があります)。",
                false),
            "enforce_crl_expiry": boolean(
                "Reject every device certificate when a CRL's nextUpdate has passed.",
                "CRL の nextUpdate を過ぎたらすべての端末証明書を拒否する。",
                false)
        }),
    );
    trust["required"] = json!(["ca_files"]);
    trust["properties"]["ca_files"]["minItems"] = json!(1);

    let mut key = object(
        "A key that may sign posture assertions (an MDM or endpoint agent).",
        "端末状態アサーションに署名できる鍵 (MDM やエンドポイントエージェント)。",
        json!({
            "kid": {"description": d("`kid` the tokens name; if unset, the key is tried for tokens without a `kid`.", "トークンが指定する `kid`。未指定なら `kid` のないトークンに使われます。"), "type": ["string", "null"]},
            "public_key_file": path("PEM PUBLIC KEY (SubjectPublicKeyInfo): EC P-256/P-384, Ed25519 or RSA.", "PEM 形式の公開鍵 (SubjectPublicKeyInfo): EC P-256/P-384、Ed25519、RSA。"),
            "algorithm": {"description": d("Narrow the algorithms further (must fit the key type), e.g. `PS256`. Default: all that fit.", "許可するアルゴリズムを絞る (鍵の種類に合うもの)。例: `PS256`。既定: 鍵に合うすべて。"),
                          "type": ["string", "null"],
                          "examples": ["ES256", "ES384", "EdDSA", "RS256", "PS256"]},
            "issuer": {"description": d("Required `iss` for tokens signed by this key. Default: any.", "この鍵で署名されたトークンに求める `iss`。既定: 任意。"), "type": ["string", "null"]}
        }),
    );
    key["required"] = json!(["public_key_file"]);

    let mut assertions = object(
        "Signed posture assertions (JWT) sent by an agent on the device, bound to its certificate.",
        "端末上のエージェントが送る署名付き端末状態アサーション (JWT)。端末証明書に紐付きます。",
        json!({
            "header": with(string("Request header that carries the assertion.", "アサーションを運ぶリクエストヘッダ。"),
                           json!({"default": "Sekisho-Device-Posture", "pattern": HEADER_NAME})),
            "keys": {"description": d("Keys that may sign assertions. Required, non-empty.", "アサーションに署名できる鍵。必須 (1 つ以上)。"),
                     "type": "array", "minItems": 1, "items": key},
            "audience": {"description": d("Required `aud` value, if set.", "指定時、必須の `aud` の値。"), "type": ["string", "null"]},
            "max_age": posture_duration("Oldest acceptable `iat`.", "受け入れる `iat` の古さの上限。", "15m"),
            "leeway": posture_duration("Clock skew tolerated for `iat`/`nbf`/`exp`.", "`iat`/`nbf`/`exp` で許容する時計のずれ。", "60s")
        }),
    );
    assertions["required"] = json!(["keys"]);

    let mut dev = object(
        "Device certificates and posture. Browsers are asked for a device certificate only on hosts whose routes have a policy (or `client_certificate: request`).",
        "端末証明書と端末の状態。ブラウザに端末証明書を求めるのは、ポリシーのあるルート (または `client_certificate: request`) のホストだけです。",
        json!({
            "trust": trust,
            "inventory_files": paths("MDM inventory exports (.yaml/.yml/.csv), reloaded when they change. Default: none (inventory facts are unknown).",
                                     "MDM の端末台帳エクスポート (.yaml/.yml/.csv)。変更時に再読み込みされます。既定: なし (台帳の情報は不明扱い)。"),
            "assertions": assertions,
            "posture": object(
                "Freshness limits: older facts count as unknown, never as a silent allow.",
                "鮮度の上限: 古い情報は「不明」として扱われ、黙って許可されることはありません。",
                json!({
                    "inventory_max_age": posture_duration("Inventory facts older than this (from `last_check_in`) are unknown.", "これより古い台帳の情報 (`last_check_in` 基準) は不明扱い。", "72h"),
                    "assertion_max_age": posture_duration("Assertion facts older than this are unknown.", "これより古いアサーションの情報は不明扱い。", "15m"),
                    "clock_skew": posture_duration("Observations dated up to this far in the future are accepted.", "この範囲までの未来の日時の観測を受け入れます (時計のずれ)。", "5m")
                }))
        }),
    );
    dev["required"] = json!(["trust"]);
    dev
}

fn header_or_null(en: &str, ja: &str, default: &str) -> Value {
    json!({
        "description": d(&format!("{en} `null` turns it off."), &format!("{ja} `null` で無効。")),
        "oneOf": [{"type": "string", "pattern": HEADER_NAME}, {"type": "null"}],
        "default": default
    })
}

fn identity() -> Value {
    let mut oidc = object(
        "Browser sign-in with OpenID Connect (authorization code flow with PKCE).",
        "OpenID Connect によるブラウザのサインイン (PKCE 付き認可コードフロー)。",
        json!({
            "issuer": {"description": d("Issuer URL (https; plain http only for a provider on 127.0.0.1). Discovery is at `<issuer>/.well-known/openid-configuration`.",
                                        "発行者 (Issuer) の URL (https。平文 http は 127.0.0.1 上のプロバイダのみ)。`<issuer>/.well-known/openid-configuration` を参照します。"),
                       "type": "string", "pattern": URL},
            "client_id": text("Client ID registered at the provider.", "プロバイダに登録したクライアント ID。"),
            "client_secret_file": path("File holding the client secret (chmod 600). Omit for a public client.", "クライアントシークレットを入れたファイル (chmod 600)。公開クライアントでは省略。"),
            "scopes": with(one_or_many("Scopes to request; must include `openid`.", "要求するスコープ。`openid` を含める必要があります。",
                                       json!({"type": "string", "minLength": 1})),
                           json!({"default": ["openid", "email", "profile"]})),
            "extra_auth_params": {
                "description": d("Extra query parameters for the authorization request (e.g. `prompt: login`).", "認可リクエストに加えるクエリパラメータ (例: `prompt: login`)。"),
                "type": "object",
                "additionalProperties": {"type": ["string", "number"]}
            }
        }),
    );
    oidc["required"] = json!(["issuer", "client_id"]);
    oidc["properties"]["scopes"]["oneOf"][0]["const"] = json!("openid");
    oidc["properties"]["scopes"]["oneOf"][1]["contains"] = json!({"const": "openid"});

    let mut session = object(
        "Sessions in encrypted, authenticated cookies.",
        "暗号化・認証付きクッキーによるセッション。",
        json!({
            "cookie_keys_file": path("Cookie key file: one `id:base64key` per line, newest first (make one with `sekisho keys cookie`; chmod 600). Reloaded on change, so keys rotate without a restart.",
                                     "クッキー鍵ファイル: 1 行に 1 つ `id:base64鍵`、新しい鍵が先頭 (`sekisho keys cookie` で作成、chmod 600)。変更時に再読み込みされ、再起動なしで鍵を切り替えられます。"),
            "absolute_lifetime": duration("A session ends this long after sign-in, whatever happens.", "サインインからこの時間でセッションは必ず終了します。", "10h"),
            "idle_timeout": duration("A session ends after this long without requests.", "この時間リクエストがなければセッションは終了します。", "1h"),
            "refresh_claims_after": duration("Groups and claims are refreshed from the provider after this long (15m or less recommended).", "この時間が経つとグループ等のクレームをプロバイダから更新します (15 分以下を推奨)。", "10m")
        }),
    );
    session["required"] = json!(["cookie_keys_file"]);

    let mut bearer = object(
        "Bearer JWTs (`Authorization: Bearer …`) for scripts and apps, verified against the issuer's JWKS.",
        "スクリプトやアプリ向けの Bearer JWT (`Authorization: Bearer …`)。発行者の JWKS で検証します。",
        json!({
            "issuer": text("Expected `iss`, exactly.", "期待する `iss` (完全一致)。"),
            "audiences": one_or_many("Accepted `aud` values (at least one).", "受け入れる `aud` の値 (1 つ以上)。",
                                     json!({"type": ["string", "number"], "minLength": 1})),
            "jwks_uri": {"description": d("JWKS URL (default: discovered from the issuer).", "JWKS の URL (既定: 発行者のディスカバリから取得)。"),
                         "type": "string", "pattern": URL},
            "leeway": duration("Clock skew tolerated for `exp`/`nbf`.", "`exp`/`nbf` で許容する時計のずれ。", "60s"),
            "require_typ": boolean("Require the JWT `typ` header (`at+jwt` or `jwt`).", "JWT の `typ` ヘッダ (`at+jwt` または `jwt`) を必須にする。", false)
        }),
    );
    bearer["required"] = json!(["issuer", "audiences"]);
    bearer["properties"]["audiences"]["oneOf"][1]["minItems"] = json!(1);

    let claims = object(
        "Which token claims carry the user's identity.",
        "利用者の属性をどのクレームから読むか。",
        json!({
            "subject": with(string("Claim of the user ID.", "利用者 ID のクレーム。"), json!({"default": "sub"})),
            "email": with(string("Claim of the e-mail address.", "メールアドレスのクレーム。"), json!({"default": "email"})),
            "name": with(string("Claim of the display name.", "表示名のクレーム。"), json!({"default": "name"})),
            "groups": with(string("Claim of the groups.", "グループのクレーム。"), json!({"default": "groups"})),
            "group_names": {
                "description": d("Rename groups the provider sends as IDs (e.g. Entra ID GUIDs) to the names policies use.",
                                 "プロバイダが ID で送るグループ (例: Entra ID の GUID) を、ポリシーで使う名前に読み替えます。"),
                "type": "object",
                "additionalProperties": {"type": ["string", "number"], "minLength": 1}
            },
            "relevant_groups": one_or_many("Keep only these groups (smaller cookies). Default: all.", "これらのグループだけを保持します (クッキーを小さくするため)。既定: すべて。",
                                           json!({"type": ["string", "number"]})),
            "keep_claims": one_or_many("Other claims to keep for policies (`claim:` criteria).", "ポリシー (`claim:` 条件) のために保持する他のクレーム。",
                                       json!({"type": ["string", "number"]}))
        }),
    );

    let upstream_headers = object(
        "Identity headers set on forwarded requests (headers a client sends with these names are always removed).",
        "転送するリクエストに付ける利用者ヘッダ (クライアントが送った同名のヘッダは必ず削除されます)。",
        json!({
            "user": header_or_null("Header with the user ID.", "利用者 ID のヘッダ。", "x-sekisho-user"),
            "email": header_or_null("Header with the e-mail address.", "メールアドレスのヘッダ。", "x-sekisho-email"),
            "groups": header_or_null("Header with the groups.", "グループのヘッダ。", "x-sekisho-groups")
        }),
    );

    let assertion = object(
        "The signed assertion (JWT, ES256) upstreams can verify against the gateway's JWKS.",
        "接続先がゲートウェイの JWKS で検証できる署名付きアサーション (JWT、ES256)。",
        json!({
            "header": header_or_null("Header that carries the assertion.", "アサーションを運ぶヘッダ。", "x-sekisho-assertion"),
            "key_file": path("PEM EC P-256 signing key (make one with `sekisho keys assertion`; chmod 600). Without it a key is generated at start, which suits a single replica only.",
                             "PEM 形式の EC P-256 署名鍵 (`sekisho keys assertion` で作成、chmod 600)。省略すると起動時に鍵を生成します (レプリカが 1 つの場合のみ適切)。"),
            "retired_public_keys_file": path("JWKS file ({\"keys\": [...]}) of earlier public keys, still published at /.sekisho/jwks.json during a key rotation. The assertion settings reload without a restart.",
                             "鍵の切り替え中も /.sekisho/jwks.json で公開し続ける旧公開鍵の JWKS ファイル。アサーションの設定は再起動なしで再読み込みされます。"),
            "lifetime": duration("How long an assertion is valid.", "アサーションの有効期間。", "60s"),
            "reuse": duration("How long one assertion is reused for the same user, device, route and policy version (default and most: half the lifetime). `0s`: a fresh assertion per request, with its `request_id`. Signing is the costliest step of a request.",
                              "同じ利用者・端末・ルート・ポリシー版に同じアサーションを再利用する時間 (既定かつ上限: 有効期間の半分)。`0s` でリクエストごとに新しいアサーション (`request_id` 入り)。署名はリクエスト処理で最も重い処理です。", "30s"),
            "issuer": with(string("`iss` of the assertion.", "アサーションの `iss`。"), json!({"default": "sekisho"}))
        }),
    );

    let mut id = object(
        "Sign-in, sessions and bearer tokens. Changes need a restart, except the cookie keys file and the `assertion` settings, which reload.",
        "サインイン、セッション、Bearer トークン。変更には再起動が必要です (クッキー鍵ファイルのみ再読み込みで反映)。",
        json!({
            "oidc": oidc,
            "session": session,
            "bearer": bearer,
            "claims": claims,
            "upstream_headers": upstream_headers,
            "assertion": assertion
        }),
    );
    id["anyOf"] = json!([{"required": ["oidc"]}, {"required": ["bearer"]}]);
    id["dependentRequired"] = json!({"oidc": ["session"]});
    id
}

fn audit() -> Value {
    let mut syslog = object(
        "Forward every record to a syslog server (RFC 5424 over TCP, optionally TLS).",
        "すべての記録を syslog サーバーへ転送します (RFC 5424、TCP、TLS 可)。",
        json!({
            "address": {"description": d("`host:port` of the syslog server.", "syslog サーバーの `host:port`。"),
                        "type": "string", "pattern": HOST_PORT},
            "ca_file": path("PEM CA certificates for TLS to the server (TLS is on when set).", "サーバーとの TLS に使う CA 証明書 (指定すると TLS)。"),
            "server_name": string("Name to verify in the server's certificate (required with `ca_file`).", "サーバー証明書で検証する名前 (`ca_file` 指定時は必須)。")
        }),
    );
    syslog["required"] = json!(["address"]);
    syslog["dependentRequired"] = json!({"ca_file": ["server_name"]});

    let mut a = object(
        "The tamper-evident audit trail. When it cannot be written the gateway fails closed (503, not ready). Changes need a restart.",
        "改ざん検知可能な監査ログ。書き込めないときはゲートウェイは安全側に倒れます (503、not ready)。変更には再起動が必要です。",
        json!({
            "dir": path("Directory of the audit files. One writer per directory (it takes a lock): every replica needs its own.",
                        "監査ファイルのディレクトリ。1 ディレクトリに書き込めるのは 1 プロセスのみ (ロックを取ります): レプリカごとに別のディレクトリが必要です。"),
            "durability": {
                "description": d("`batched` (default): records are fsynced in groups within `max_delay`. `strict`: every record is fsynced before the request goes on.",
                                 "`batched` (既定): `max_delay` 以内にまとめて fsync。`strict`: 記録ごとに fsync してから処理を続けます。"),
                "enum": ["batched", "strict"],
                "default": "batched"
            },
            "max_delay": {
                "description": d("Longest wait before a batch is fsynced (`batched` only).", "まとめて fsync するまでの最大待ち時間 (`batched` のみ)。"),
                "type": "string", "pattern": DURATION, "default": "50ms"
            },
            "max_file_bytes": uint("Rotate when the current file reaches this size (at least 1 MiB).", "現在のファイルがこの大きさに達したらローテーションします (1 MiB 以上)。",
                                   1_048_576, None, 64 * 1024 * 1024),
            "retention_days": uint("Delete files whose day is older than this many days; 0 keeps everything. Less than a year draws a warning.",
                                   "この日数より古い日のファイルを削除します。0 ですべて保持。1 年未満は警告になります。",
                                   0, Some(u64::from(u32::MAX)), 400),
            "checkpoint_key_file": path("Ed25519 key that signs checkpoints of the chain. Must not live in the audit directory.",
                                        "ハッシュチェーンのチェックポイントに署名する Ed25519 鍵。監査ディレクトリの中に置いてはいけません。"),
            "syslog": syslog
        }),
    );
    a["required"] = json!(["dir"]);
    a
}

/// The JSON Schema of the gateway configuration file (`sekisho.yaml`).
pub fn config_schema() -> Value {
    let mut properties = Map::new();
    properties.insert(
        "instance".into(),
        with(
            text(
                "Name of this gateway instance, in logs and audit records.",
                "このゲートウェイの名前。ログと監査記録に出ます。",
            ),
            json!({"default": "sekisho"}),
        ),
    );
    properties.insert("logging".into(), logging());
    properties.insert("admin".into(), admin());
    properties.insert("limits".into(), limits());
    properties.insert(
        "policies".into(),
        one_or_many(
            "Policy files, or directories of .yaml policy files, relative to this file. Reloaded when they change.",
            "ポリシーファイル、または .yaml ポリシーファイルのディレクトリ (このファイルからの相対パス)。変更時に再読み込みされます。",
            json!({"type": "string", "minLength": 1}),
        ),
    );
    properties.insert("devices".into(), devices());
    properties.insert("identity".into(), identity());
    properties.insert("audit".into(), audit());
    properties.insert(
        "trusted_proxies".into(),
        one_or_many(
            "Peers (CIDR) whose X-Forwarded-For/-Proto/-Host and X-Request-Id are kept, e.g. a load balancer in front. Everyone else's are replaced.",
            "X-Forwarded-For/-Proto/-Host と X-Request-Id を信頼する送信元 (CIDR)。例: 前段のロードバランサー。それ以外からのものは置き換えられます。",
            json!({"type": "string", "pattern": CIDR}),
        ),
    );
    properties.insert(
        "zones".into(),
        json!({
            "description": d("Zones by name (e.g. `lgwan`, `internet`, `mynumber`). At least one.",
                             "名前ごとのゾーン (例: `lgwan`、`internet`、`mynumber`)。1 つ以上。"),
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"$ref": "#/$defs/zone"}
        }),
    );
    properties.insert(
        "listeners".into(),
        json!({
            "description": d("TLS listeners by name. At least one.", "名前ごとの TLS リスナー。1 つ以上。"),
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"$ref": "#/$defs/listener"}
        }),
    );
    properties.insert(
        "routes".into(),
        json!({
            "description": d("Routes by name.", "名前ごとのルート。"),
            "type": "object",
            "additionalProperties": {"$ref": "#/$defs/route"}
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sekisho.example/schema/config.schema.json",
        "title": "Sekisho gateway configuration (関所 ゲートウェイ設定)",
        "description": d(
            "The gateway configuration file (sekisho.yaml). `sekisho check` runs the same loader as `serve` and reports what a schema cannot: missing files, unknown policy and zone names, overlapping zones, forbidden crossings.",
            "ゲートウェイの設定ファイル (sekisho.yaml)。`sekisho check` は `serve` と同じ読み込み処理を実行し、スキーマでは分からない誤り (ファイルの有無、未定義のポリシー名・ゾーン名、ゾーンの重複、禁止されたゾーン越え) も報告します。"),
        "type": "object",
        "additionalProperties": false,
        "required": ["zones", "listeners", "routes"],
        "properties": Value::Object(properties),
        "$defs": {
            "zone": zone(),
            "listener": listener(),
            "route": route()
        }
    })
}

/// Pretty JSON with sorted keys and a trailing newline, as committed.
pub fn to_pretty(schema: &Value) -> String {
    sekisho_policy::schema::to_pretty(schema)
}
