"""E-maps (电子地图): map images per node, camera pins and child areas."""
