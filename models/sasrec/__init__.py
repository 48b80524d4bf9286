"""SASRec: the sequential recall model."""
