"""The words of ``report --modelzoo`` (``launcher.ui.modelzoo``): the row labels of both ModelZoo
performance tables and every phrase of their values and notes, in English and Chinese.

Labels are spelt as in ModelZoo's README template (``how_to_contribute/README_TEMPLATE.md``)
and its Chinese READMEs; kept apart from the table logic so a translation is one file.
"""

from __future__ import annotations

LANGS = ("en", "zh")

#: (English, Chinese) label of every row, in the templates' order and spelling.
TRAINING_LABELS: dict[str, tuple[str, str]] = {
    "model_version": ("Model Version", "模型版本"),
    "resource": ("Resource", "资源"),
    "uploaded_date": ("uploaded Date", "上传日期"),
    "mindspore_version": ("MindSpore Version", "MindSpore版本"),
    "dataset": ("Dataset", "数据集"),
    "training_parameters": ("Training Parameters", "训练参数"),
    "optimizer": ("Optimizer", "优化器"),
    "loss_function": ("Loss Function", "损失函数"),
    "outputs": ("outputs", "输出"),
    "loss": ("Loss", "损失"),
    "speed": ("Speed", "速度"),
    "total_time": ("Total time", "总时长"),
    "parameters": ("Parameters (M)", "参数(M)"),
    "checkpoint": ("Checkpoint for Fine tuning", "微调检查点"),
    "scripts": ("Scripts", "脚本"),
}
INFERENCE_LABELS: dict[str, tuple[str, str]] = {
    "model_version": ("Model Version", "模型版本"),
    "resource": ("Resource", "资源"),
    "uploaded_date": ("Uploaded Date", "上传日期"),
    "mindspore_version": ("MindSpore Version", "MindSpore 版本"),
    "dataset": ("Dataset", "数据集"),
    "batch_size": ("batch_size", "batch_size"),
    "outputs": ("outputs", "输出"),
    "accuracy": ("Accuracy", "准确率"),
    "model_for_inference": ("Model for inference", "推理模型"),
}

#: Every phrase of the tables, by language; ``{}`` fields are filled by ``_t``.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "parameters": "Parameters", "training": "Training Performance",
        "inference": "Inference Performance", "notes": "Notes:",
        "unknown": "unknown", "unknown_why": "unknown ({})", "paren": "{} ({})",
        "sep": "; ", "comma": ", ",
        "devices": "{n} × {kind}", "hosts": "{n} {hosts}: {names}",
        "machine": "CPU {cpu}, {cores} cores; Memory {mem}",
        "machine_remote": "{host}: {cores} cores used; CPU model and memory unknown (only the "
                          "launching host is probed)",
        "cpu_unnamed": "model unknown (/proc/cpuinfo names none)",
        "no_machines": "CPU and memory unknown: not recorded by this run ({version})",
        "date": "{:%m/%d/%Y} (month/day/year)",
        "not_finished": "the run has not finished: its status is {}",
        "not_in_run_json": "not recorded in run.json",
        "no_start": "no start event in metrics.jsonl",
        "no_config": "no readable config.yaml in the run directory",
        "dataset": "{path}: {train} training / {test} test images, {classes} classes",
        "skipped": "{n} unreadable {images} skipped",
        "counts_unknown": "image counts unknown: no start event in metrics.jsonl",
        "params_line": "epoch={epochs}, steps per epoch={steps}, batch_size={batch} per device "
                       "({world} devices: {total} per step), lr={lr} ({schedule}), "
                       "momentum={momentum}, weight_decay={wd}",
        "amp": "amp_level={}",
        "cosine": "cosine decay to {end}", "step": "×{factor} at epochs {epochs}",
        "constant": "constant", "warmup": "{n:g} warm-up {epochs}",
        "momentum": "Momentum", "nesterov": "Momentum (Nesterov)",
        "softmax_ce": "Softmax Cross Entropy", "smoothing": "label smoothing {}",
        "probability": "probability", "n_classes": "{} classes",
        "speed": "{n}p: {ms} ms/step", "no_steps": "no timed step events in metrics.jsonl",
        "no_loss": "no epoch_end or step event with a loss in metrics.jsonl",
        "time_s": "{:.1f} s", "time_min": "{:.1f} mins", "time_h": "{:.1f} h",
        "wall": "{n}p: {time}", "still_running": "the run is still running",
        "no_wall": "run.json records no start and end",
        "params_m": "{m} ({count:,})",
        "ckpt": "{size} (.ckpt file)", "no_ckpt": "no checkpoint in checkpoints/",
        "scripts": "{name} {version}", "scripts_unknown": "{name} (version not recorded in run.json)",
        "no_result": "no evaluation or prediction result in this run",
        "infer_devices": "{n} device(s)", "kind_unknown": "device kind not recorded",
        "predict_resource": "not recorded by the prediction",
        "test_split": "{path}: test split, {total} images",
        "test_folder": "{path}: {total} images",
        "predict_images": "{images} images ({source})", "predict_unreadable": "{} unreadable",
        "per_devices": "{n}p: {text}", "top5": "top-5 {}",
        "no_accuracy": "the newest result has no accuracy (its images were not labelled)",
        "model_file": "{size} (.{suffix} file)",
        "no_model_file": "no .mindir, .onnx or .air file in the run directory; "
                         "`{prog} export RUN/checkpoints/CKPT -o RUN/` makes one",
        "per_device": "{} per device", "training_ms": "the training run's",
        "how_get": "No evaluation or prediction result in this run yet: `{prog} eval {run}` makes one "
                   "(`{prog} predict` with a labelled folder also gives an accuracy).",
        "note_status": "The run's status is {status}: these are the numbers of a run that did "
                       "not finish normally.",
        "note_speed": "Speed: median of {count} {intervals} between rank {rank}'s step events "
                      "inside one epoch ({epochs}), wall time per step: data loading included, "
                      "evaluation and checkpoints not.",
        "note_speed_later": "epochs {a}-{b}; each process's first epoch, with graph "
                            "compilation, left out",
        "note_speed_first": "epochs {a}-{b}; the first epoch included, the run has no later one",
        "note_time": "Total time: the run's wall time from launch to end, run.json wall_s = "
                     "{seconds:.1f} s{attempts}.",
        "attempts": ", {} attempts",
        "note_loss": "Loss: mean over the ranks of the last epoch's loss (epoch {epoch}).",
        "note_params": "Parameters: {count:,} trainable parameters ({how}).",
        "params_start": "the workers' count in the start event, as `{prog} model` counts them",
        "params_built": "counted by building the config's model, as `{prog} model` does",
        "note_ckpt": "Checkpoint: {path}, {size:,} bytes ({how}).",
        "ckpt_best": "the best-evaluated epoch's", "ckpt_latest": "the one latest.json names",
        "ckpt_newest": "the newest .ckpt file",
        "note_result": "Accuracy from {path} ({kind}).",
        "kind_train_eval": "training's final evaluation", "kind_eval": "evaluation",
        "kind_predict": "prediction of labelled images",
        "note_model": "Model for inference: {path}, {size:,} bytes.",
    },
    "zh": {
        "parameters": "参数", "training": "训练性能", "inference": "推理性能", "notes": "说明：",
        "unknown": "未知", "unknown_why": "未知（{}）", "paren": "{}（{}）",
        "sep": "；", "comma": "，",
        "devices": "{n} × {kind}", "hosts": "{n}台主机：{names}",
        "machine": "CPU {cpu}，{cores}核；内存 {mem}",
        "machine_remote": "{host}：使用 {cores} 核；CPU 型号和内存未知（只探测启动主机）",
        "cpu_unnamed": "型号未知（/proc/cpuinfo 未给出）",
        "no_machines": "CPU 和内存未知：此运行未记录（{version}）",
        "date": "{:%Y-%m-%d}",
        "not_finished": "运行尚未结束：状态为 {}",
        "not_in_run_json": "run.json 未记录",
        "no_start": "metrics.jsonl 中没有 start 事件",
        "no_config": "运行目录中没有可读的 config.yaml",
        "dataset": "{path}：训练集 {train} 张、测试集 {test} 张图像，{classes} 类",
        "skipped": "跳过 {n} 张无法读取的图像",
        "counts_unknown": "图像数量未知：metrics.jsonl 中没有 start 事件",
        "params_line": "epoch={epochs}，steps per epoch={steps}，batch_size={batch}/卡"
                       "（{world} 卡：每步 {total}），lr={lr}（{schedule}），"
                       "momentum={momentum}，weight_decay={wd}",
        "amp": "amp_level={}",
        "cosine": "余弦衰减至 {end}", "step": "在第 {epochs} 轮乘以 {factor}",
        "constant": "恒定", "warmup": "预热 {n:g} 轮",
        "momentum": "Momentum", "nesterov": "Momentum（Nesterov）",
        "softmax_ce": "Softmax交叉熵", "smoothing": "标签平滑 {}",
        "probability": "概率", "n_classes": "{}类",
        "speed": "{n}卡：{ms}毫秒/步", "no_steps": "metrics.jsonl 中没有带时间的 step 事件",
        "no_loss": "metrics.jsonl 中没有带损失的 epoch_end 或 step 事件",
        "time_s": "{:.1f}秒", "time_min": "{:.1f}分钟", "time_h": "{:.1f}小时",
        "wall": "{n}卡：{time}", "still_running": "运行仍在进行",
        "no_wall": "run.json 未记录开始和结束",
        "params_m": "{m}（{count:,}）",
        "ckpt": "{size}（.ckpt文件）", "no_ckpt": "checkpoints/ 中没有检查点",
        "scripts": "{name} {version}", "scripts_unknown": "{name}（run.json 未记录版本）",
        "no_result": "此运行没有评估或预测结果",
        "infer_devices": "{n} 卡", "kind_unknown": "未记录设备类型",
        "predict_resource": "预测未记录",
        "test_split": "{path}：测试集 {total} 张图像",
        "test_folder": "{path}：{total} 张图像",
        "predict_images": "{images} 张图像（{source}）", "predict_unreadable": "{} 张无法读取",
        "per_devices": "{n}卡：{text}", "top5": "top-5 {}",
        "no_accuracy": "最新结果没有准确率（图像没有标签）",
        "model_file": "{size}（.{suffix}文件）",
        "no_model_file": "运行目录中没有 .mindir、.onnx 或 .air 文件；"
                         "`{prog} export RUN/checkpoints/CKPT -o RUN/` 可导出",
        "per_device": "{}/卡", "training_ms": "训练运行的",
        "how_get": "此运行还没有评估或预测结果：`{prog} eval {run}` 可生成"
                   "（`{prog} predict` 对有标签的图像文件夹也给出准确率）。",
        "note_status": "运行状态为 {status}：以下是未正常结束的运行的数值。",
        "note_speed": "速度：rank {rank} 在同一轮内相邻 step 事件之间 {count} 个间隔的中位数"
                      "（{epochs}），每步墙钟时间：含数据加载，不含评估和检查点。",
        "note_speed_later": "第 {a}-{b} 轮；每个进程含图编译的第一轮不计",
        "note_speed_first": "第 {a}-{b} 轮；运行没有更多轮次，包含第一轮",
        "note_time": "总时长：运行从启动到结束的墙钟时间，run.json wall_s = {seconds:.1f} 秒{attempts}。",
        "attempts": "，共 {} 次尝试",
        "note_loss": "损失：最后一轮（第 {epoch} 轮）各 rank 损失的平均值。",
        "note_params": "参数：{count:,} 个可训练参数（{how}）。",
        "params_start": "worker 在 start 事件中的计数，与 `{prog} model` 的算法相同",
        "params_built": "按配置构建模型计数，与 `{prog} model` 相同",
        "note_ckpt": "检查点：{path}，{size:,} 字节（{how}）。",
        "ckpt_best": "评估最好的一轮", "ckpt_latest": "latest.json 指向的检查点",
        "ckpt_newest": "最新的 .ckpt 文件",
        "note_result": "准确率来自 {path}（{kind}）。",
        "kind_train_eval": "训练结束时的评估", "kind_eval": "评估",
        "kind_predict": "有标签图像的预测",
        "note_model": "推理模型：{path}，{size:,} 字节。",
    },
}
