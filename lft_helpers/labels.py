"""The task's two classes, in label order: the data's 0/1 and the model's id2label both use it."""

LABEL_NAMES = ("NEGATIVE", "POSITIVE")
