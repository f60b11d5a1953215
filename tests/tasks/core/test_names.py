"""tasks/core/names.py: the catalogues a config is checked against, and what classes are called."""

from tasks.core.names import FASHION_MNIST_CLASSES, class_names


def test_classes_are_named_after_the_dataset_whatever_its_spelling():
    assert class_names("fashion-mnist", 10) == list(FASHION_MNIST_CLASSES)  # Debian's folder
    assert class_names("Fashion_MNIST", 10)[9] == "Ankle boot"
    assert class_names("mnist", 10) == [str(d) for d in range(10)]
    assert class_names("xor", 2) == ["0", "1"]


def test_class_names_fall_back_to_labels_when_unknown_or_the_count_differs():
    assert class_names("fashion-mnist", 3) == ["0", "1", "2"]
    assert class_names("my-own-images", 4) == ["0", "1", "2", "3"]
    assert class_names(None, 2) == ["0", "1"]
