//! Why this file: activation checkpointing of the encoder blocks (`torch.utils.checkpoint`
//! around each block). A training step at 518² keeps every block's attention scores, MLP
//! activations and their bf16 copies alive until the backward; with checkpointing only each
//! block's input survives the forward, and each block runs again, last to first, during the
//! backward. candle's backward has no hooks, so the backward runs in two parts: the loss's own
//! (`loss.backward()`) stops at the block outputs the head read, held as leaf variables, and
//! [`Recompute::backward`] continues from there, one block at a time, adding each block's
//! parameter gradients to the same store. The gradients are those of the plain backward; the
//! cost is one more forward of the encoder.

use crate::dinov2::{DinoVisionTransformer, LayerOutput};
use candle_core::backprop::GradStore;
use candle_core::{Module, Result, Tensor, Var};
use depth_core::Precision;

/// What the encoder's backward needs after a checkpointed forward.
pub struct Recompute {
    encoder: DinoVisionTransformer,
    image: Tensor,
    /// Each block's input (detached); the first is the prepared tokens.
    inputs: Vec<Tensor>,
    /// The block outputs the head read, as leaves: (block, variable).
    taken: Vec<(usize, Var)>,
    precision: Precision,
}

impl DinoVisionTransformer {
    /// [`DinoVisionTransformer::get_intermediate_layers`] keeping only the blocks' inputs (the
    /// backward of its result needs [`Recompute::backward`] after the loss's own).
    pub fn get_intermediate_layers_recomputed(
        &self,
        x: &Tensor,
        layers: &[usize],
        precision: Precision,
    ) -> Result<(Vec<LayerOutput>, Recompute)> {
        let last = self.last_layer(layers)?;
        let mut h = self.prepare_tokens(x)?.detach();
        let (mut inputs, mut taken) = (Vec::with_capacity(last + 1), Vec::with_capacity(layers.len()));
        for (i, blk) in self.blocks().iter().enumerate().take(last + 1) {
            inputs.push(h.clone());
            // detached: the block's graph, and every activation it holds, is dropped here
            h = blk.forward(&h)?.detach();
            if layers.contains(&i) {
                taken.push((i, Var::from_tensor(&h)?));
            }
        }
        let leaves: Vec<(usize, Tensor)> = taken.iter().map(|(i, v)| (*i, v.as_tensor().clone())).collect();
        let features = self.normed(&leaves, layers)?;
        let encoder = self.clone();
        Ok((features, Recompute { encoder, image: x.clone(), inputs, taken, precision }))
    }
}

impl Recompute {
    /// Adds the encoder's parameter gradients to `grads`, the store of the loss's backward: it
    /// takes out the gradients of the block outputs the head read and carries them back
    /// through each block, recomputed, to the patch embedding.
    pub fn backward(self, grads: &mut GradStore) -> Result<()> {
        depth_core::autocast(self.precision, || self.carry_back(grads))
    }

    fn carry_back(self, grads: &mut GradStore) -> Result<()> {
        let blocks = self.encoder.blocks();
        let mut carry: Option<Tensor> = None;
        for i in (0..self.inputs.len()).rev() {
            let from_head =
                self.taken.iter().find(|(j, _)| *j == i).and_then(|(_, v)| grads.remove(v.as_tensor()));
            // the output's gradient: from the next block, from the head, or both
            let g = match (carry.take(), from_head) {
                (Some(a), Some(b)) => (a + b)?,
                (Some(g), None) | (None, Some(g)) => g,
                (None, None) => continue,
            };
            let input = Var::from_tensor(&self.inputs[i])?;
            let out = blocks[i].forward(input.as_tensor())?;
            let mut block_grads = (out * g)?.sum_all()?.backward()?;
            carry = block_grads.remove(input.as_tensor());
            grads.extend(block_grads)?;
        }
        if let Some(g) = carry {
            let tokens = self.encoder.prepare_tokens(&self.image)?;
            grads.extend((tokens * g)?.sum_all()?.backward()?)?;
        }
        Ok(())
    }
}
