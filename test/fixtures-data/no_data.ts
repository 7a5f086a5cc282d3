@problemName NoData
@dimensions 2
@classLabel true x y
