//! A bounded dry run of a pickle before candle's reader sees it.
//!
//! candle's pickle VM copies an object each time the memo is read, and builds and drops nested
//! objects recursively. So an 816-byte pickle that builds 64 levels of `[x, x]` from memo
//! references asks for 2^64 copies, and one nested 200000 deep overflows the stack. This scan
//! runs the opcode stream with each value reduced to its size (objects, as candle would copy
//! them) and its nesting depth, and refuses the file before any of that happens. It executes
//! nothing: GLOBAL/REDUCE only name classes, as in candle's reader, and here they are counted.

/// The most objects a pickle may expand to when every memo reference is copied (a ViT-G state
/// dict is ~20k).
pub const MAX_OBJECTS: u64 = 1 << 24;
/// The deepest nesting of containers (a state dict is ~6 deep).
pub const MAX_DEPTH: u32 = 256;
/// The most values on the VM stack or in the memo at once.
const MAX_ENTRIES: usize = 1 << 22;

#[derive(Clone, Copy)]
struct Value {
    objects: u64,
    depth: u32,
}

const LEAF: Value = Value { objects: 1, depth: 1 };

enum Slot {
    Mark,
    Value(Value),
}

struct Vm {
    stack: Vec<Slot>,
    memo: std::collections::HashMap<u64, Value>,
}

impl Vm {
    fn push(&mut self, v: Value) -> Result<(), String> {
        if v.objects > MAX_OBJECTS {
            return Err(format!("it expands to more than {MAX_OBJECTS} objects (a memo-reference bomb)"));
        }
        if v.depth > MAX_DEPTH {
            return Err(format!("it nests deeper than {MAX_DEPTH} levels"));
        }
        if self.stack.len() >= MAX_ENTRIES {
            return Err(format!("its stack grows past {MAX_ENTRIES} entries"));
        }
        self.stack.push(Slot::Value(v));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err("a value was expected, a MARK was found".into()),
            None => Err("the stack is empty".into()),
        }
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err("a value was expected on the stack".into()),
        }
    }

    /// The values above the topmost MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or("no MARK on the stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items.into_iter().map(|s| if let Slot::Value(v) = s { v } else { LEAF }).collect())
    }

    /// A container holding `items`.
    fn container(items: impl IntoIterator<Item = Value>) -> Value {
        items.into_iter().fold(LEAF, |acc, v| Value {
            objects: acc.objects.saturating_add(v.objects),
            depth: acc.depth.max(v.depth.saturating_add(1)),
        })
    }

    /// Adds `items` to the container on top of the stack (APPEND(S), SETITEM(S), BUILD, ADDITEMS).
    fn extend_top(&mut self, items: Vec<Value>) -> Result<(), String> {
        let top = self.pop()?;
        let added = Self::container(items);
        self.push(Value {
            objects: top.objects.saturating_add(added.objects - 1),
            depth: top.depth.max(added.depth),
        })
    }

    fn memo_put(&mut self, id: u64) -> Result<(), String> {
        let v = *self.top()?;
        if self.memo.len() >= MAX_ENTRIES && !self.memo.contains_key(&id) {
            return Err(format!("its memo grows past {MAX_ENTRIES} entries"));
        }
        self.memo.insert(id, v);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<(), String> {
        let v = *self.memo.get(&id).ok_or_else(|| format!("memo entry {id} is read before it is written"))?;
        self.push(v)
    }
}

/// Reads little-endian unsigned integers and byte runs, refusing reads past the end.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = (self.data.len() - self.at) as u64;
        if n > left {
            return Err(format!(
                "an argument of {n} bytes at offset {} runs past the end ({left} left)",
                self.at
            ));
        }
        let s = &self.data[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }

    fn uint(&mut self, n: u64) -> Result<u64, String> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    /// A memo index written as decimal text (protocol 0 PUT and GET).
    fn line_index(&mut self) -> Result<u64, String> {
        let l = self.line()?;
        std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| "a bad memo index".into())
    }

    /// A newline-terminated text argument (protocol 0 opcodes).
    fn line(&mut self) -> Result<&'a [u8], String> {
        let rest = &self.data[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("a text argument has no end of line")?;
        self.at += end + 1;
        Ok(&rest[..end])
    }
}

/// Checks a pickle's opcode stream (see the module doc); `Err` says why it is refused.
pub fn scan(data: &[u8]) -> Result<(), String> {
    let mut b = Bytes { data, at: 0 };
    let mut vm = Vm { stack: Vec::new(), memo: Default::default() };
    loop {
        let at = b.at;
        let op = *b.take(1).map_err(|_| "the pickle ends without STOP".to_string())?.first().unwrap_or(&0);
        let step = match op {
            b'.' => return vm.pop().map(|_| ()).map_err(|e| format!("at STOP: {e}")),
            b'(' => {
                if vm.stack.len() >= MAX_ENTRIES {
                    return Err(format!("its stack grows past {MAX_ENTRIES} entries"));
                }
                vm.stack.push(Slot::Mark);
                Ok(())
            }
            b'0' => vm.stack.pop().map(|_| ()).ok_or_else(|| "POP on an empty stack".to_string()),
            b'1' => vm.pop_mark().map(|_| ()),
            b'2' => vm.top().map(|v| *v).and_then(|v| vm.push(v)),
            // scalars and strings
            b'F' | b'I' | b'L' | b'S' | b'V' => b.line().and_then(|_| vm.push(LEAF)),
            b'J' => b.take(4).and_then(|_| vm.push(LEAF)),
            b'K' => b.take(1).and_then(|_| vm.push(LEAF)),
            b'M' => b.take(2).and_then(|_| vm.push(LEAF)),
            b'G' => b.take(8).and_then(|_| vm.push(LEAF)),
            b'N' | 0x88 | 0x89 => vm.push(LEAF),
            b'T' | b'X' | b'B' => b.uint(4).and_then(|n| b.take(n)).and_then(|_| vm.push(LEAF)),
            b'U' | b'C' | 0x8c | 0x8a => b.uint(1).and_then(|n| b.take(n)).and_then(|_| vm.push(LEAF)),
            0x8b => b.uint(4).and_then(|n| b.take(n)).and_then(|_| vm.push(LEAF)),
            0x8d | 0x8e | 0x96 => b.uint(8).and_then(|n| b.take(n)).and_then(|_| vm.push(LEAF)),
            b'c' => b.line().and_then(|_| b.line()).and_then(|_| vm.push(LEAF)),
            0x82 => b.take(1).and_then(|_| vm.push(LEAF)),
            0x83 => b.take(2).and_then(|_| vm.push(LEAF)),
            0x84 => b.take(4).and_then(|_| vm.push(LEAF)),
            // new empty containers
            b'}' | b']' | b')' | 0x8f => vm.push(LEAF),
            // containers from the values above a MARK
            b'd' | b'l' | b't' | 0x91 => vm.pop_mark().and_then(|items| vm.push(Vm::container(items))),
            b'i' => b
                .line()
                .and_then(|_| b.line())
                .and_then(|_| vm.pop_mark())
                .and_then(|items| vm.push(Vm::container(items))),
            b'o' => vm.pop_mark().and_then(|items| vm.push(Vm::container(items))),
            0x85 => vm.pop().and_then(|a| vm.push(Vm::container([a]))),
            0x86 => {
                vm.pop().and_then(|a| Ok((vm.pop()?, a))).and_then(|(a, c)| vm.push(Vm::container([a, c])))
            }
            0x87 => {
                let c = vm.pop()?;
                let (b2, a) = (vm.pop()?, vm.pop()?);
                vm.push(Vm::container([a, b2, c]))
            }
            // a call or a class: its arguments become part of the result, as in candle's reader
            b'R' | 0x81 | 0x93 => {
                vm.pop().and_then(|a| Ok((vm.pop()?, a))).and_then(|(f, a)| vm.push(Vm::container([f, a])))
            }
            0x92 => {
                let (k, a, f) = (vm.pop()?, vm.pop()?, vm.pop()?);
                vm.push(Vm::container([f, a, k]))
            }
            b'Q' => vm.pop().and_then(|v| vm.push(Vm::container([v]))),
            b'P' => b.line().and_then(|_| vm.push(LEAF)),
            // mutation of the container below
            b'a' | b'b' => vm.pop().and_then(|v| vm.extend_top(vec![v])),
            b's' => vm.pop().and_then(|v| Ok((vm.pop()?, v))).and_then(|(k, v)| vm.extend_top(vec![k, v])),
            b'e' | b'u' | 0x90 => vm.pop_mark().and_then(|items| vm.extend_top(items)),
            // memo
            b'p' => b.line_index().and_then(|id| vm.memo_put(id)),
            b'g' => b.line_index().and_then(|id| vm.memo_get(id)),
            b'q' => b.uint(1).and_then(|id| vm.memo_put(id)),
            b'r' => b.uint(4).and_then(|id| vm.memo_put(id)),
            b'h' => b.uint(1).and_then(|id| vm.memo_get(id)),
            b'j' => b.uint(4).and_then(|id| vm.memo_get(id)),
            0x94 => {
                let id = vm.memo.len() as u64;
                vm.memo_put(id)
            }
            // framing
            0x80 => b.take(1).map(|_| ()),
            0x95 => b.take(8).map(|_| ()),
            other => Err(format!("opcode 0x{other:02x} is not one a checkpoint uses")),
        };
        step.map_err(|e| format!("pickle opcode 0x{op:02x} at byte {at}: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pickle (protocol 2) of `[x1, x1]` where x1 = `[x0, x0]`, … down to an empty list x0,
    /// each level a memo reference to the one below.
    fn memo_bomb(levels: u8) -> Vec<u8> {
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for i in 1..=levels {
            p.extend_from_slice(&[b'(', b'h', i - 1, b'h', i - 1, b'l', b'q', i]);
        }
        p.push(b'.');
        p
    }

    #[test]
    fn ordinary_pickles_pass() {
        // {'a': ('x', 1, [1.5, None])} written by pickle.dumps(..., protocol=2)
        let ok = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01X\x01\x00\x00\x00xq\x02K\x01]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00Ne\x87q\x04s.";
        assert_eq!(scan(ok), Ok(()), "tuple3 of a list");
        assert_eq!(scan(&memo_bomb(8)), Ok(()), "2^8 copies is fine");
    }

    #[test]
    fn memo_bombs_deep_nesting_and_truncation_are_refused() {
        let err = scan(&memo_bomb(64)).unwrap_err();
        assert!(err.contains("memo-reference bomb"), "{err}");
        // 200000 nested tuples: MARK × n, then TUPLE × n
        let n = 200_000;
        let deep = [vec![0x80, 2], vec![b'('; n], vec![b')'], vec![b't'; n], vec![b'.']].concat();
        let err = scan(&deep).unwrap_err();
        assert!(err.contains("deeper than"), "{err}");
        // a string whose length claims 4 GB
        let err = scan(b"\x80\x02X\xff\xff\xff\xffabc.").unwrap_err();
        assert!(err.contains("runs past the end"), "{err}");
        assert!(scan(b"\x80\x02}").unwrap_err().contains("without STOP"));
        assert!(scan(b"\x80\x02h\x05.").unwrap_err().contains("read before it is written"));
        assert!(scan(b"\x80\x02\xff.").unwrap_err().contains("0xff"));
    }
}
