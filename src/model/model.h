/* model: the Yuan 2.0 decoder (shared/docs/yuan-architecture.md): forward,
 * backward, loss. CONTRACT used by trainer, generate and the CLI: functions
 * below may gain fields/options, but keep these meanings. */
#ifndef YF_MODEL_H
#define YF_MODEL_H

#include "formats/config.h"
#include "kernels/cpu/quant.h"
#include "lora/lora.h"
#include "base/tensor.h"

typedef struct yf_model_opts {
    bool full_finetune;  /* every weight trainable: fp32 copies + gradients */
    bool force_f32;      /* convert bf16/f16 weights to fp32 at load */
    /* The seven projections of every layer quantized at load (type
     * YF_QT_NONE: not), and with quantize_head the LM head too (the
     * embedding, when tied). A q4 weight whose input dimension is not a
     * multiple of the group takes groups of 32, or int8 (a note on stderr).
     * Frozen: not with full_finetune. docs/quantization.md. */
    yf_qspec quant;
    bool quantize_head;
    /* Every quantized weight the model holds (at load or stored so) with
     * yf_qmat.int8_act: decoding's products round x to int8 per group and
     * take integer dot products. */
    bool int8_act;
} yf_model_opts;

typedef struct yf_model yf_model; /* defined in model_internal.h */

/* Loads a model directory (config.json + weights in any supported format). */
int yf_model_load(const char *dir, const yf_model_opts *opts, yf_model **out);
void yf_model_free(yf_model *m);
const yf_config *yf_model_config(const yf_model *m);
/* The checkpoint's tensors as loaded (names as in the checkpoint; a
 * quantized one as YF_QMAT): what an adapter's DoRA initialisation reads
 * (yf_lora_init). */
const yf_table *yf_model_tensors(const yf_model *m);
/* Writes the model as a directory whose quantized weights are stored
 * quantized (yuanft quantize; docs/quantization.md names the tensors and the
 * metadata), the others in their checkpoint dtype; loading it does not
 * quantize again. tokenizer.model and the vocabulary map are copied from
 * copy_from (NULL: none). */
int yf_model_save_quantized(const yf_model *m, const char *dir, const char *copy_from);
/* Whether a checkpoint's table holds weights stored quantized (NAME.qweight). */
bool yf_table_has_stored_quant(const yf_table *tab);
/* Bytes of the weights a decoded token reads (every layer's, the final norm,
 * the head; not an untied embedding's), quantized ones at their quantized
 * size; *quantized (may be NULL): the quantized ones' share. */
size_t yf_model_weight_bytes(const yf_model *m, size_t *quantized);
/* For merging an adapter trained over a quantized base (yuanft merge
 * --quantize): each tensor of tab (a checkpoint of cfg) that a model loaded
 * with o quantizes is replaced by its quantization, dequantized and rounded
 * to the tensor's own dtype (bf16 for a bf16 checkpoint: a rounding far
 * below the quantization's). */
int yf_table_dequantized(const yf_config *cfg, yf_table *tab, const yf_model_opts *o);

/* Forward pass. ids [B,T]. logits [B,T,V] f32 or NULL. If labels != NULL,
 * *loss_sum = sum of next-token cross-entropies (labels[t+1] scored against
 * logits[t], -100 ignored) and *ntok = number of scored positions.
 * lora may be NULL. No dropout. */
int yf_model_forward(yf_model *m, const yf_lora *lora, const int64_t *ids, const int64_t *labels,
                     int64_t B, int64_t T, float *logits, double *loss_sum, int64_t *ntok);

/* Whether a batch's rows compute their common prefix once (docs/shared-prefix.md). */
typedef enum yf_share_mode {
    YF_SHARE_OFF = 0, /* every row whole, padding included (as the HF Trainer computes it) */
    YF_SHARE_AUTO,    /* shared when it pays: B >= 2 and a prefix of at least YF_SHARE_AUTO_MIN tokens */
    YF_SHARE_ON,      /* always the shared path, even for a prefix of 0 (tests) */
} yf_share_mode;
/* auto's threshold in tokens of common prefix (measured: docs/shared-prefix.md) */
#define YF_SHARE_AUTO_MIN 16

/* What the shared path left out, summed over calls. */
typedef struct yf_share_stats {
    int64_t batches;         /* micro-batches that took the shared path */
    int64_t prefix_saved;    /* (B - 1) x P: positions of the prefix computed once instead of B times */
    int64_t padding_skipped; /* the other positions not computed: padding, and positions after a row's last scored one */
} yf_share_stats;

typedef struct yf_backward_opts {
    float loss_scale;            /* grads are of loss_scale * (sum of token losses) */
    bool gradient_checkpointing; /* keep only layer inputs; recompute in backward */
    struct yf_rng *dropout_rng;  /* LoRA dropout source; NULL = no dropout */
    /* The rows' common prefix (their ids up to where they first differ) run
     * once and its gradients summed from every row, each row's rest up to its
     * last scored position run as its own segment: the same loss and
     * gradients as every row whole, up to fp32 summation order. LoRA dropout
     * then draws one mask for the prefix, shared by the rows. */
    yf_share_mode shared_prefix;
    yf_share_stats *share_stats; /* if non-NULL, += what the shared path left out */
} yf_backward_opts;

/* The length of the longest common prefix of B rows of T ids (T for one row). */
int64_t yf_common_prefix(const int64_t *ids, int64_t B, int64_t T);

/* Forward + backward: returns the loss sum / count as yf_model_forward and
 * ACCUMULATES (+=) gradients into lora's gA/gB/gm (lora != NULL) and, in
 * full-finetune mode, into the model's parameter gradients. */
int yf_model_forward_backward(yf_model *m, yf_lora *lora, const int64_t *ids, const int64_t *labels,
                              int64_t B, int64_t T, const yf_backward_opts *o,
                              double *loss_sum, int64_t *ntok);

/* Trainable model parameters (full-finetune mode only; else n = 0), with
 * their checkpoint names, in checkpoint order. A tied head is not listed:
 * its gradient goes to model.embed_tokens.weight. free(out->p) when done. */
void yf_model_params(yf_model *m, yf_param_list *out);

/* Writes DIR/config.json + DIR/model.safetensors (HF layout, a tied head
 * written once as the embedding) with the current weights (the trained fp32
 * copies in full-finetune mode), each tensor in dtype dt (F32, BF16, F16) or,
 * with dt == YF_DTYPE_COUNT, in its checkpoint dtype. */
int yf_model_save(const yf_model *m, const char *dir, yf_dtype dt);

#endif
