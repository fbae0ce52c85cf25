//! Why a device certificate was not accepted.
//!
//! Every reason has a stable machine code (for audit records and bounded metric labels)
//! and a sentence for a person, in Japanese and English. The gateway maps these to a page;
//! this crate never decides what HTTP status they become.

use jiff::Timestamp;

/// Why a presented client certificate does not identify a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceCertError {
    /// `now` is after the certificate's `notAfter`.
    #[error("device certificate expired at {not_after}")]
    Expired { not_after: Timestamp },
    /// `now` is before the certificate's `notBefore`.
    #[error("device certificate is not valid before {not_before}")]
    NotYetValid { not_before: Timestamp },
    /// The serial is on a configured CRL.
    #[error("device certificate {serial} is revoked")]
    Revoked { serial: String },
    /// The certificate does not chain to a configured device CA.
    #[error("device certificate was not issued by a trusted device CA ({detail})")]
    UnknownCa { detail: String },
    /// The certificate is valid but carries no device ID where the configuration looks for it.
    #[error("device certificate carries no device ID ({detail})")]
    NoDeviceId { detail: String },
    /// The certificate could not be parsed.
    #[error("device certificate is malformed ({detail})")]
    Malformed { detail: String },
    /// Revocation status could not be determined (no CRL for the issuing CA, or CRL expired).
    #[error("device certificate revocation status is unknown ({detail})")]
    RevocationUnknown { detail: String },
    /// Any other verifier rejection (wrong key usage, bad signature, …).
    #[error("device certificate rejected ({detail})")]
    Rejected { detail: String },
}

impl DeviceCertError {
    /// Stable machine code, safe as a metric label (closed set).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "device_cert_expired",
            Self::NotYetValid { .. } => "device_cert_not_yet_valid",
            Self::Revoked { .. } => "device_cert_revoked",
            Self::UnknownCa { .. } => "device_cert_unknown_ca",
            Self::NoDeviceId { .. } => "device_cert_no_device_id",
            Self::Malformed { .. } => "device_cert_malformed",
            Self::RevocationUnknown { .. } => "device_cert_revocation_unknown",
            Self::Rejected { .. } => "device_cert_rejected",
        }
    }

    /// A sentence for the staff member, in Japanese. Contains no internals.
    pub fn message_ja(&self) -> &'static str {
        match self {
            Self::Expired { .. } => {
                "端末証明書の有効期限が切れています。情報システム担当に証明書の更新を依頼してください。"
            }
            Self::NotYetValid { .. } => {
                "端末証明書の有効期間がまだ始まっていません。端末の時刻を確認するか、情報システム担当に連絡してください。"
            }
            Self::Revoked { .. } => {
                "この端末の証明書は失効しています。情報システム担当に連絡してください。"
            }
            Self::UnknownCa { .. } => {
                "端末証明書が当団体の認証局から発行されたものではありません。支給された端末から接続してください。"
            }
            Self::NoDeviceId { .. } => {
                "端末証明書に端末IDが含まれていません。情報システム担当に証明書の再発行を依頼してください。"
            }
            Self::Malformed { .. } => {
                "端末証明書を読み取れませんでした。情報システム担当に連絡してください。"
            }
            Self::RevocationUnknown { .. } => {
                "端末証明書の失効状態を確認できませんでした。しばらくしてから再度お試しください。"
            }
            Self::Rejected { .. } => {
                "端末証明書を受け付けられませんでした。情報システム担当に連絡してください。"
            }
        }
    }

    /// A sentence for the staff member, in English. Contains no internals.
    pub fn message_en(&self) -> &'static str {
        match self {
            Self::Expired { .. } => {
                "Your device certificate has expired. Ask the IT team to renew it."
            }
            Self::NotYetValid { .. } => {
                "Your device certificate is not valid yet. Check the device clock or contact the IT team."
            }
            Self::Revoked { .. } => {
                "This device's certificate has been revoked. Contact the IT team."
            }
            Self::UnknownCa { .. } => {
                "Your device certificate was not issued by this organisation's device CA. Use a device issued to you."
            }
            Self::NoDeviceId { .. } => {
                "Your device certificate has no device ID. Ask the IT team to reissue it."
            }
            Self::Malformed { .. } => {
                "Your device certificate could not be read. Contact the IT team."
            }
            Self::RevocationUnknown { .. } => {
                "The revocation status of your device certificate could not be checked. Try again later."
            }
            Self::Rejected { .. } => {
                "Your device certificate was not accepted. Contact the IT team."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_messages_present() {
        let all = [
            DeviceCertError::Expired {
                not_after: Timestamp::UNIX_EPOCH,
            },
            DeviceCertError::NotYetValid {
                not_before: Timestamp::UNIX_EPOCH,
            },
            DeviceCertError::Revoked {
                serial: "01".into(),
            },
            DeviceCertError::UnknownCa {
                detail: String::new(),
            },
            DeviceCertError::NoDeviceId {
                detail: String::new(),
            },
            DeviceCertError::Malformed {
                detail: String::new(),
            },
            DeviceCertError::RevocationUnknown {
                detail: String::new(),
            },
            DeviceCertError::Rejected {
                detail: String::new(),
            },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
        for e in &all {
            assert!(
                !e.message_ja().is_ascii(),
                "{} needs a Japanese message",
                e.code()
            );
            assert!(e.message_en().is_ascii());
        }
    }
}
