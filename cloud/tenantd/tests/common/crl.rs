//! Reading CRLs in tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};

/// What a CRL says: its number, its Issuing Distribution Point URI, the serials it lists (hex,
/// without leading zero bytes).
#[derive(Debug)]
pub struct CrlSays {
    pub number: u64,
    pub idp: Option<String>,
    pub serials: Vec<String>,
}

pub fn uri(names: &[GeneralName<'_>]) -> Option<String> {
    names.iter().find_map(|n| match n {
        GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    })
}

pub fn trim_serial(hex: &str) -> String {
    let mut s = hex.to_ascii_lowercase();
    while s.len() > 2 && s.starts_with("00") {
        s.drain(..2);
    }
    s
}

pub fn read_crl(pem_text: &str) -> CrlSays {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).unwrap();
    assert_eq!(pem.label, "X509 CRL");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
    let idp = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::IssuingDistributionPoint(idp) => match &idp.distribution_point {
                Some(DistributionPointName::FullName(names)) => uri(names),
                _ => None,
            },
            _ => None,
        });
    CrlSays {
        number: crl
            .crl_number()
            .map(|n| u64::try_from(n.clone()).unwrap())
            .unwrap(),
        idp,
        serials: crl
            .iter_revoked_certificates()
            .map(|r| trim_serial(&hex::encode(r.raw_serial())))
            .collect(),
    }
}
