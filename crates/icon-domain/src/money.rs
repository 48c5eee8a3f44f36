//! Money in minor units with its currency, and order quantities.
//!
//! Amounts are integers of the currency's minor unit (pence, cents) so no rounding ever happens
//! in ICON; the currency is an ISO 4217 code from the active list, not any three letters.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("currency must be an active ISO 4217 code such as GBP, EUR or USD")]
    UnknownCurrency,
    #[error("amount_minor must be zero or more")]
    NegativeAmount,
    #[error("quantity must be between 1 and 10000")]
    BadQuantity,
}

/// Active ISO 4217 codes (funds and precious metals left out: nobody buys a dress in XAU).
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND",
    "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        match ISO_4217.binary_search(&s) {
            Ok(_) => {
                let b = s.as_bytes();
                Ok(Self([b[0], b[1], b[2]]))
            }
            Err(_) => Err(MoneyError::UnknownCurrency),
        }
    }
    pub fn as_str(&self) -> &str {
        // Only ever built from an ASCII entry of ISO_4217.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A price: an amount of minor units, never negative, in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::NegativeAmount);
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }
    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
}

/// How many of one SKU: 1 to 10,000 (a bound that keeps totals far from overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i32")]
pub struct Quantity(i32);

impl Quantity {
    pub fn new(q: i64) -> Result<Self, MoneyError> {
        if (1..=10_000).contains(&q) {
            Ok(Self(q as i32))
        } else {
            Err(MoneyError::BadQuantity)
        }
    }
    pub fn get(&self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = MoneyError;
    fn try_from(q: i64) -> Result<Self, Self::Error> {
        Self::new(q)
    }
}

impl From<Quantity> for i32 {
    fn from(q: Quantity) -> Self {
        q.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_list_is_sorted_for_binary_search() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn currencies() {
        assert_eq!(Currency::parse("GBP").unwrap().as_str(), "GBP");
        assert_eq!(Currency::parse("gbp"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::parse("ABC"), Err(MoneyError::UnknownCurrency));
    }

    #[test]
    fn money_and_quantity_bounds() {
        let gbp = Currency::parse("GBP").unwrap();
        assert!(Money::new(-1, gbp).is_err());
        assert_eq!(Money::new(1999, gbp).unwrap().amount_minor(), 1999);
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(10_001).is_err());
        assert_eq!(Quantity::new(3).unwrap().get(), 3);
    }
}
