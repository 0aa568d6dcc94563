//! What never reaches a log: values of the keys in post 05/06's `filter_parameters` (password,
//! credit_card, ssn, email, phone, address, customer_email, customer_phone, billing_address,
//! credit_card_last_four, bank_account, tax_id; `../shared/reference/tasker-blog-facts.md` §8),
//! plus card data and payment tokens, are replaced by `[FILTERED]` (the engine's default mask)
//! wherever a context or a result is logged. As in Rails' parameter filter, a key matches when
//! it contains a listed word, at any depth: `customer_email`, `shipping_address` and
//! `card_last_four` all go.

use serde_json::Value;

/// The words a key is filtered for (lowercase).
pub const FILTER_PARAMETERS: &[&str] = &[
    "password",
    "credit_card",
    "ssn",
    "email",
    "phone",
    "address",
    "customer_email",
    "customer_phone",
    "billing_address",
    "credit_card_last_four",
    "bank_account",
    "tax_id",
    // Beyond the post's list: card data and payment tokens in this project's contexts, and
    // people's names.
    "card",
    "token",
    "first_name",
    "last_name",
    "full_name",
    "customer_name",
];

/// Keys filtered only when they are exactly this word (as a part of a key it names too much:
/// `step_name`, `workflow_name`).
pub const FILTER_EXACT: &[&str] = &["name"];

/// What a filtered value becomes.
pub const FILTER_MASK: &str = "[FILTERED]";

/// Whether the values of `key` are never logged.
pub fn is_filtered(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    FILTER_PARAMETERS.iter().any(|word| key.contains(word)) || FILTER_EXACT.contains(&key.as_str())
}

/// `text` if it is a short identifier safe to put in a log field, a metric label or a span
/// attribute: 1 to `max` characters of letters, digits, `_`, `-` and `.`, nothing the text
/// scrubber would mask, and no run of 9 or more digits once `-`, `.` and `_` are skipped (a
/// card, phone, account or social security number written as an id). `None` otherwise.
pub fn safe_id(text: &str, max: usize) -> Option<&str> {
    let charset = (1..=max).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !charset || scrub_text(text) != text {
        return None;
    }
    let mut run = 0;
    for c in text.chars().filter(|c| !matches!(c, '_' | '-' | '.')) {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 9 {
            return None;
        }
    }
    Some(text)
}

/// `value` with every filtered key's value (whatever it holds) replaced by the mask.
pub fn mask(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    // A correlation id is logged as the identifier it should be, or not at all.
                    let unsafe_id =
                        k == "correlation_id" && v.as_str().is_none_or(|id| safe_id(id, 128).is_none());
                    let v = if is_filtered(k) || unsafe_id {
                        Value::String(FILTER_MASK.into())
                    } else {
                        mask(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
        // Under any key: an address or a card number in a value is personal data too.
        Value::String(s) => Value::String(scrub_text(s)),
        other => other.clone(),
    }
}

/// `text` with every email address (a word with an `@` between other characters), card
/// number (13 to 19 digits, spaces, dashes and dots between them allowed) and international phone
/// number (`+` then 7 or more digits, spaces, dashes, dots and brackets allowed) replaced by the mask: values
/// and error messages quote what they carry or refused. Names and local phone numbers in free
/// text cannot be told from other words; the key filter (`FILTER_PARAMETERS`) is what keeps
/// them out.
pub fn scrub_text(text: &str) -> String {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    if !text.contains('@') && digits < 7 {
        return text.to_string();
    }
    let numbers = mask_numbers(text);
    numbers
        .split(' ')
        .map(|word| {
            let core = word.trim_matches(|c: char| !c.is_alphanumeric());
            let email = core
                .split_once('@')
                .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty());
            if email {
                word.replace(core, FILTER_MASK)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Masks runs of digits (with up to three spaces, dashes, dots or brackets between them) that
/// are card numbers (13–19 digits) or follow a `+` (7 or more digits: a phone number). It errs
/// towards masking: a list of small numbers can read as a card number.
fn mask_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A run: digits, each separator followed by a digit.
        let start = i;
        let mut end = i;
        let mut count = 0;
        while end < chars.len() {
            if chars[end].is_ascii_digit() {
                count += 1;
                end += 1;
                continue;
            }
            // Separators between digits: spaces (even two), dashes, dots, and a phone's
            // brackets (`+1 (555) 010-9999`).
            let mut next = end;
            while next < chars.len() && next - end < 3 && matches!(chars[next], ' ' | '-' | '.' | '(' | ')') {
                next += 1;
            }
            if next > end && chars.get(next).is_some_and(char::is_ascii_digit) {
                end = next;
            } else {
                break;
            }
        }
        let phone = start > 0 && chars[start - 1] == '+' && count >= 7;
        // Digits touching letters are part of an identifier (a task id, an order number in
        // hex), not a card number: masking them would corrupt the id and protect nothing.
        let in_word = (start > 0 && chars[start - 1].is_ascii_alphabetic())
            || chars.get(end).is_some_and(|c| c.is_ascii_alphabetic());
        if ((13..=19).contains(&count) && !in_word) || phone {
            if phone {
                out.pop(); // the `+`
            }
            out.push_str(FILTER_MASK);
        } else {
            out.extend(&chars[start..end]);
        }
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_keys_are_masked_at_any_depth_and_the_rest_stays() {
        let context = json!({
            "customer_info": { "email": "jane@example.com", "name": "Jane", "phone": "+1 555 0100", "tier": "premium" },
            "payment_info": { "card_last_four": "4242", "token": "tok_visa", "amount": 124.76 },
            "shipping_info": { "address": "1 Main St", "city": "Anytown" },
            "customer_email": "jane@example.com",
            "cart_items": [{ "sku": "A", "Billing_Address": { "zip": "12345" } }],
        });
        let masked = mask(&context);
        let text = masked.to_string();
        for secret in [
            "jane@example.com",
            "555 0100",
            "4242",
            "tok_visa",
            "1 Main St",
            "12345",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(masked["customer_info"]["tier"], "premium");
        assert_eq!(masked["payment_info"]["amount"], json!(124.76));
        assert_eq!(masked["shipping_info"]["city"], "Anytown");
        assert_eq!(masked["cart_items"][0]["Billing_Address"], FILTER_MASK);
        assert_eq!(
            scrub_text("email.send_email: invalid_email — `bad@example` is not a deliverable address"),
            "email.send_email: invalid_email — `[FILTERED]` is not a deliverable address"
        );
        assert_eq!(scrub_text("no address here @ all"), "no address here @ all");
        assert_eq!(
            mask(&json!({ "recipient": "jane@example.com" }))["recipient"],
            FILTER_MASK
        );
        assert_eq!(scrub_text("4242 4242 4242 4242"), FILTER_MASK);
        assert_eq!(
            scrub_text("card 4242424242424242 declined"),
            "card [FILTERED] declined"
        );
        assert_eq!(
            scrub_text("order 12345 of 2026-11-29"),
            "order 12345 of 2026-11-29"
        );
        assert_eq!(
            mask(&json!({ "name": "John Doe", "step_name": "pay" }))["name"],
            FILTER_MASK
        );
        assert_eq!(mask(&json!({ "step_name": "pay" }))["step_name"], "pay");
        for card in [
            "4111.1111.1111.1111",
            "4111  1111  1111  1111",
            "call +1 (555) 010-9999 now",
        ] {
            assert!(
                !scrub_text(card).contains("1111") && !scrub_text(card).contains("9999"),
                "{card}: {}",
                scrub_text(card)
            );
        }
        assert_eq!(
            scrub_text("version 1.2.3 on 10.0.0.1"),
            "version 1.2.3 on 10.0.0.1"
        );
        // Digits inside an identifier are not a card number.
        let delegated = "delegated by task 01a22a90-3219-7456-8012-345678b96877def4";
        assert_eq!(scrub_text(delegated), delegated);
        assert_eq!(
            mask(&json!({ "correlation_id": "John Smith" }))["correlation_id"],
            FILTER_MASK
        );
        assert_eq!(
            mask(&json!({ "correlation_id": "checkout_1a2b3c4d" }))["correlation_id"],
            "checkout_1a2b3c4d"
        );
    }

    #[test]
    fn only_short_identifiers_without_personal_data_are_safe() {
        for ok in [
            "premium",
            "credit_card",
            "checkout_98de0bb3",
            "checkout_12345678",
            "01a229d0-90bf-77fc-b68a-de7e58f7ded8",
            "RATE_LIMITED",
        ] {
            assert_eq!(safe_id(ok, 64), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "jane.doe@example.com",
            "4111111111111111",
            "4111-1111-1111-1111",
            "5550109999",
            "123-45-6789",
            "Jane Doe",
            "+15550109999",
            "a\nb",
        ] {
            assert_eq!(safe_id(bad, 64), None, "{bad}");
        }
        assert_eq!(safe_id("abcdef", 5), None);
    }
}
