//! How a compiled table's port classes are laid out in the dataplane: per
//! port value a `PortSlot` holding the class bitmap inline when its set
//! bits lie in one word (most service-ACL ports), else a reference to a
//! wide class stored whole, in the `WIDE_BM` array when the table has at
//! most `WIDE_SLOTS` of them and in the `CLASSES` hash otherwise. Pure, so
//! the layout rules are unit-tested without a kernel.

use std::collections::HashMap;

use rampart_common::{Bitmap, CLASS_TABLE_SHIFT, PORT_WIDE, PortSlot, WIDE_SLOTS};

use crate::fw::policy::CompiledTable;

/// The port arrays and wide classes of one table.
pub struct PortLayout<'t> {
    /// One slot per source port / ICMP type.
    pub sport: Vec<PortSlot>,
    /// One slot per destination port / ICMP code.
    pub dport: Vec<PortSlot>,
    /// Wide classes: (`WIDE_BM` index or `CLASSES` key, bitmap).
    pub wide: Vec<(u32, &'t Bitmap)>,
    /// True: `wide` goes to `WIDE_BM`, else to `CLASSES`.
    pub in_array: bool,
}

/// Lays out table number `table` (its index in the maps).
pub fn layout(table: u32, t: &CompiledTable) -> PortLayout<'_> {
    let is_wide = |c: &u32| t.classes.get(*c as usize).is_some_and(|b| b.hi > b.lo + 1);
    let mut wide_ids: HashMap<u32, u32> = HashMap::new();
    for &c in t.sport.iter().chain(&t.dport).filter(|c| is_wide(c)) {
        let next = u32::try_from(wide_ids.len()).unwrap_or(u32::MAX);
        wide_ids.entry(c).or_insert(next);
    }
    let in_array = wide_ids.len() <= WIDE_SLOTS;
    let base = table << CLASS_TABLE_SHIFT;
    let key = |class: u32, id: u32| {
        if in_array {
            table * WIDE_SLOTS as u32 + id
        } else {
            base | class
        }
    };
    let slot = |c: &u32| match (wide_ids.get(c), t.classes.get(*c as usize)) {
        (Some(&id), _) => PortSlot {
            word: PORT_WIDE,
            class: key(*c, id),
            bits: 0,
        },
        (None, Some(b)) if b.hi > b.lo => PortSlot {
            word: b.lo,
            class: 0,
            bits: b.words[b.lo as usize],
        },
        // An empty class: no rule matches the port.
        _ => PortSlot::default(),
    };
    let mut wide: Vec<(u32, &Bitmap)> = wide_ids
        .iter()
        .filter_map(|(&c, &id)| Some((key(c, id), t.classes.get(c as usize)?)))
        .collect();
    wide.sort_unstable_by_key(|(k, _)| *k);
    PortLayout {
        sport: t.sport.iter().map(slot).collect(),
        dport: t.dport.iter().map(slot).collect(),
        wide,
        in_array,
    }
}

#[cfg(test)]
mod tests {
    use rampart_common::{ACTION_PERMIT, BITMAP_WORDS, PORTS};

    use super::*;
    use crate::fw::policy::{AddrLookup, empty_bitmap, finalize};

    fn bitmap(rules: &[usize]) -> Bitmap {
        let mut b = empty_bitmap();
        for &i in rules {
            b.words[i / 64] |= 1 << (i % 64);
        }
        finalize(&mut b);
        *b
    }

    /// A table whose destination ports 0..classes.len() use class i.
    fn table(classes: Vec<Bitmap>) -> CompiledTable {
        let n = u32::try_from(classes.len()).unwrap();
        let mut dport = vec![0u32; PORTS];
        for (p, d) in dport.iter_mut().enumerate().take(classes.len()) {
            *d = u32::try_from(p).unwrap();
        }
        assert!(n > 0);
        CompiledTable {
            default_action: ACTION_PERMIT,
            rules: Vec::new(),
            labels: Vec::new(),
            src: Vec::new(),
            dst: Vec::new(),
            proto: Vec::new(),
            sport: vec![0; PORTS],
            dport,
            classes,
            no_l4: empty_bitmap(),
            has_drop_established: false,
            constants: Vec::new(),
            addr_lookup: AddrLookup::default(),
        }
    }

    #[test]
    fn one_word_classes_are_inline_and_wide_ones_referenced() {
        let t = table(vec![
            bitmap(&[]),
            bitmap(&[70, 100]),
            bitmap(&[3, 64 * 9 + 1]),
        ]);
        let l = layout(2, &t);
        assert_eq!(l.dport[0], PortSlot::default(), "empty class");
        assert_eq!(
            l.dport[1],
            PortSlot {
                word: 1,
                class: 0,
                bits: (1 << 6) | (1 << 36),
            }
        );
        assert!(l.in_array);
        assert_eq!(l.dport[2].word, PORT_WIDE);
        assert_eq!(
            l.dport[2].class,
            2 * WIDE_SLOTS as u32,
            "table 2's first wide slot"
        );
        assert_eq!(l.wide.len(), 1);
        assert_eq!(l.wide[0].0, l.dport[2].class);
        assert_eq!(l.wide[0].1.words[9], 2);
        // Ports past the listed classes use class 0 (empty) like port 0.
        assert_eq!(l.dport[5000], PortSlot::default());
    }

    #[test]
    fn too_many_wide_classes_go_to_the_hash() {
        let classes: Vec<Bitmap> = (0..=WIDE_SLOTS).map(|i| bitmap(&[i, 64 + i])).collect();
        let t = table(classes);
        let l = layout(1, &t);
        assert!(!l.in_array);
        assert_eq!(l.wide.len(), WIDE_SLOTS + 1);
        assert_eq!(
            l.dport[7].class,
            (1 << CLASS_TABLE_SHIFT) | 7,
            "CLASSES key"
        );
        assert!(l.wide.iter().all(|(_, b)| b.hi as usize <= BITMAP_WORDS));
    }
}
